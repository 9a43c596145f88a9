//! CRI client: gRPC over a unix socket.
//!
//! The kubelet reaches its runtime at an endpoint such as
//! `unix:///run/containerd/containerd.sock` (`--container-runtime-endpoint`).
//! gRPC needs an HTTP/2 connection; tonic normally dials TCP, so we hand it a
//! connector that opens a `UnixStream` instead. The URI given to tonic is then
//! only a placeholder (`http://[::]:0`): HTTP/2 requires an authority, but
//! nothing is resolved from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper_util::rt::TokioIo;
use proto::runtime::v1::image_service_client::ImageServiceClient;
use proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use proto::runtime::v1::{ImageSpec, ImageStatusRequest, VersionRequest, VersionResponse};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI API version the kubelet announces in `VersionRequest.version`.
pub const CRI_API_VERSION: &str = "v1";

/// Turns `unix:///path`, `unix:/path` or a bare `/path` into the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        bail!("unsupported CRI endpoint {endpoint:?}: only unix sockets are supported");
    } else {
        endpoint
    };
    if !path.starts_with('/') {
        bail!("CRI endpoint {endpoint:?} must be an absolute unix socket path");
    }
    Ok(PathBuf::from(path))
}

/// A connection to a container runtime: the two CRI services share one
/// HTTP/2 channel (cheap to clone, requests are multiplexed).
#[derive(Clone, Debug)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl CriClient {
    /// Connects to `endpoint` (`unix:///path/to/sock` or `/path/to/sock`).
    /// Fails if the socket does not accept a connection within 5 seconds.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let socket = socket_path(endpoint)?;
        let channel = unix_channel(&socket).await?;
        Ok(Self {
            // Large replies (ListContainers on a busy node) exceed tonic's
            // 4 MiB default; the kubelet allows 16 MiB.
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            image: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
            socket,
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `RuntimeService.Version`: the first call a kubelet makes, to learn the
    /// runtime's name/version and check it speaks CRI v1.
    pub async fn version(&mut self) -> Result<VersionResponse> {
        let resp = self
            .runtime
            .version(VersionRequest { version: CRI_API_VERSION.into() })
            .await
            .context("CRI Version")?;
        Ok(resp.into_inner())
    }

    /// `ImageService.ImageStatus`: is `image` present locally? An absent image
    /// is an empty response, not an error (this is how the kubelet implements
    /// `imagePullPolicy: IfNotPresent` before deciding to call PullImage).
    pub async fn image_present(&mut self, image: &str) -> Result<bool> {
        let resp = self
            .image
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec { image: image.into(), ..Default::default() }),
                verbose: false,
            })
            .await
            .with_context(|| format!("CRI ImageStatus {image}"))?;
        Ok(resp.into_inner().image.is_some())
    }
}

/// Opens a tonic channel whose transport is a unix socket.
pub async fn unix_channel(socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
    });
    let channel = Endpoint::from_static("http://[::]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .context("connecting to CRI socket")?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(endpoint: &str, expected: Option<&str>) {
        let got = socket_path(endpoint).ok();
        assert_eq!(got.as_deref(), expected.map(Path::new), "endpoint {endpoint:?}");
    }

    #[test]
    fn endpoint_to_socket_path() {
        check("unix:///run/containerd/containerd.sock", Some("/run/containerd/containerd.sock"));
        check("unix:/run/x.sock", Some("/run/x.sock"));
        check("/tmp/a.sock", Some("/tmp/a.sock"));
        check("tcp://127.0.0.1:1234", None);
        check("unix://relative.sock", None);
        check("relative.sock", None);
    }

    /// A fake runtime answering only `Version` and `ImageStatus`, served by
    /// the generated tonic server on a unix socket.
    struct FakeRuntime;

    #[tonic::async_trait]
    impl proto::runtime::v1::image_service_server::ImageService for FakeRuntime {
        async fn list_images(&self, _: tonic::Request<proto::runtime::v1::ListImagesRequest>) -> Result<tonic::Response<proto::runtime::v1::ListImagesResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn image_status(&self, req: tonic::Request<ImageStatusRequest>) -> Result<tonic::Response<proto::runtime::v1::ImageStatusResponse>, tonic::Status> {
            let name = req.into_inner().image.map(|i| i.image).unwrap_or_default();
            let image = (name == "docker.io/library/present:1").then(|| proto::runtime::v1::Image { id: "sha256:1".into(), ..Default::default() });
            Ok(tonic::Response::new(proto::runtime::v1::ImageStatusResponse { image, info: Default::default() }))
        }
        async fn pull_image(&self, _: tonic::Request<proto::runtime::v1::PullImageRequest>) -> Result<tonic::Response<proto::runtime::v1::PullImageResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn remove_image(&self, _: tonic::Request<proto::runtime::v1::RemoveImageRequest>) -> Result<tonic::Response<proto::runtime::v1::RemoveImageResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }
        async fn image_fs_info(&self, _: tonic::Request<proto::runtime::v1::ImageFsInfoRequest>) -> Result<tonic::Response<proto::runtime::v1::ImageFsInfoResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("fake"))
        }
    }

    #[tokio::test]
    async fn talks_grpc_over_unix_socket() {
        use proto::runtime::v1::image_service_server::ImageServiceServer;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("cri.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ImageServiceServer::new(FakeRuntime))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let mut cri = CriClient::connect(&format!("unix://{}", sock.display())).await.unwrap();
        assert_eq!(cri.socket(), sock.as_path());
        assert!(cri.image_present("docker.io/library/present:1").await.unwrap());
        assert!(!cri.image_present("docker.io/library/absent:1").await.unwrap());
        // The runtime service is not served: the call reaches the server and fails as UNIMPLEMENTED.
        let err = cri.version().await.unwrap_err();
        let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        server.abort();
    }

    #[tokio::test]
    async fn connect_to_missing_socket_fails() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let err = CriClient::connect(&format!("unix://{}", sock.display())).await.unwrap_err();
        assert!(format!("{err:#}").contains("connecting to CRI socket"), "{err:#}");
    }
}
