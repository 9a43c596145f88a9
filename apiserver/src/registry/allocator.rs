//! ClusterIP and NodePort allocation, kept in etcd as kube-apiserver keeps
//! it: one `RangeAllocation`-style record per range (`<prefix>/ranges/
//! serviceips`, `<prefix>/ranges/servicenodeports`) holding a bitmap. Every
//! change is a compare-and-swap on that key, so two apiservers sharing an
//! etcd can never hand out the same address or port.

use std::net::Ipv4Addr;

use base64::Engine;
use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::storage::etcd::{Etcd, StorageError};

/// A contiguous range of values `[base, base+size)`, addressed by offset.
#[derive(Clone)]
pub struct Range {
    key: String,
    /// How the range is written in the record (`10.96.0.0/12`, `30000-32767`).
    spec: String,
    size: u32,
    /// Offsets never handed out (network and broadcast addresses).
    reserved: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The value is outside the range.
    OutOfRange,
    /// The value is taken.
    InUse,
    /// Nothing is free.
    Full,
    Storage(String),
}

impl From<StorageError> for AllocError {
    fn from(e: StorageError) -> Self {
        AllocError::Storage(e.to_string())
    }
}

impl Range {
    pub fn new(key: String, spec: String, size: u32, reserved: Vec<u32>) -> Self {
        Range { key, spec, size, reserved }
    }

    /// Reads the bitmap and its revision (0 when the record does not exist yet).
    pub(crate) async fn load(&self, etcd: &Etcd) -> Result<(Vec<u8>, i64), AllocError> {
        let bytes = (self.size as usize).div_ceil(8);
        match etcd.get(&self.key).await? {
            None => Ok((vec![0; bytes], 0)),
            Some(kv) => {
                let v: Value = serde_json::from_slice(&kv.value).map_err(|e| AllocError::Storage(e.to_string()))?;
                let mut data = base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap_or(""))
                    .map_err(|e| AllocError::Storage(e.to_string()))?;
                data.resize(bytes, 0);
                Ok((data, kv.mod_revision))
            }
        }
    }

    pub(crate) async fn store(&self, etcd: &Etcd, data: &[u8], rev: i64) -> Result<bool, AllocError> {
        let record = json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {},
            "range": self.spec,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let bytes = serde_json::to_vec(&record).unwrap();
        let res = if rev == 0 { etcd.create(&self.key, bytes).await } else { etcd.update(&self.key, rev, bytes).await };
        match res {
            Ok(_) => Ok(true),
            Err(StorageError::AlreadyExists | StorageError::Conflict { .. } | StorageError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks `offset` used, or picks a free one when `offset` is None.
    /// Retries on a concurrent change to the record.
    pub async fn allocate(&self, etcd: &Etcd, offset: Option<u32>) -> Result<u32, AllocError> {
        loop {
            let (mut data, rev) = self.load(etcd).await?;
            let chosen = match offset {
                Some(o) if o >= self.size || self.reserved.contains(&o) => return Err(AllocError::OutOfRange),
                Some(o) if is_set(&data, o) => return Err(AllocError::InUse),
                Some(o) => o,
                None => self.pick_free(&data).ok_or(AllocError::Full)?,
            };
            mark(&mut data, chosen, true);
            if self.store(etcd, &data, rev).await? {
                return Ok(chosen);
            }
        }
    }

    /// Would `allocate(Some(offset))` succeed right now? Read-only: lets a
    /// request be rejected before anything is written.
    pub async fn check(&self, etcd: &Etcd, offset: u32) -> Result<(), AllocError> {
        if offset >= self.size || self.reserved.contains(&offset) {
            return Err(AllocError::OutOfRange);
        }
        let (data, _) = self.load(etcd).await?;
        if is_set(&data, offset) {
            return Err(AllocError::InUse);
        }
        Ok(())
    }

    pub async fn release(&self, etcd: &Etcd, offset: u32) -> Result<(), AllocError> {
        if offset >= self.size {
            return Ok(());
        }
        loop {
            let (mut data, rev) = self.load(etcd).await?;
            if !is_set(&data, offset) {
                return Ok(());
            }
            mark(&mut data, offset, false);
            if self.store(etcd, &data, rev).await? {
                return Ok(());
            }
        }
    }

    /// A random free offset (upstream picks randomly too, so concurrent
    /// allocators rarely collide on the same bit), then a scan.
    fn pick_free(&self, data: &[u8]) -> Option<u32> {
        let start = rand::random::<u32>() % self.size.max(1);
        (0..self.size)
            .map(|i| (start + i) % self.size)
            .find(|o| !self.reserved.contains(o) && !is_set(data, *o))
    }
}

/// Is offset `o` marked used in the bitmap?
pub(crate) fn is_set(data: &[u8], o: u32) -> bool {
    data[(o / 8) as usize] & (1 << (o % 8)) != 0
}

/// Marks offset `o` used or free in the bitmap.
pub(crate) fn mark(data: &mut [u8], o: u32, used: bool) {
    let b = &mut data[(o / 8) as usize];
    if used {
        *b |= 1 << (o % 8)
    } else {
        *b &= !(1 << (o % 8))
    }
}

impl Range {
    pub(crate) fn size(&self) -> u32 {
        self.size
    }
    pub(crate) fn reserved(&self) -> &[u32] {
        &self.reserved
    }
}

/// The service ClusterIP range.
#[derive(Clone)]
pub struct ServiceIps {
    pub net: Ipv4Net,
    pub(crate) range: Range,
}

impl ServiceIps {
    pub fn new(prefix: &str, net: Ipv4Net) -> Self {
        let size = 1u32 << (32 - net.prefix_len()).min(31);
        // Network and broadcast addresses are never handed out.
        let reserved = vec![0, size - 1];
        ServiceIps { net, range: Range::new(format!("{prefix}/ranges/serviceips"), net.to_string(), size, reserved) }
    }

    pub(crate) fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.net.contains(&ip).then(|| u32::from(ip) - u32::from(self.net.network()))
    }

    pub async fn allocate(&self, etcd: &Etcd, ip: Option<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
        let offset = match ip {
            Some(ip) => Some(self.offset(ip).ok_or(AllocError::OutOfRange)?),
            None => None,
        };
        let o = self.range.allocate(etcd, offset).await?;
        Ok(Ipv4Addr::from(u32::from(self.net.network()) + o))
    }

    pub async fn release(&self, etcd: &Etcd, ip: Ipv4Addr) -> Result<(), AllocError> {
        match self.offset(ip) {
            Some(o) => self.range.release(etcd, o).await,
            None => Ok(()),
        }
    }

    /// The first address, which upstream gives to the `kubernetes` service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + 1)
    }
}

/// The NodePort range.
#[derive(Clone)]
pub struct NodePorts {
    pub base: u16,
    pub last: u16,
    pub(crate) range: Range,
}

impl NodePorts {
    pub fn new(prefix: &str, base: u16, last: u16) -> Self {
        let size = (last - base) as u32 + 1;
        NodePorts {
            base,
            last,
            range: Range::new(format!("{prefix}/ranges/servicenodeports"), format!("{base}-{last}"), size, vec![]),
        }
    }

    pub async fn allocate(&self, etcd: &Etcd, port: Option<u16>) -> Result<u16, AllocError> {
        let offset = match port {
            Some(p) if p < self.base || p > self.last => return Err(AllocError::OutOfRange),
            Some(p) => Some((p - self.base) as u32),
            None => None,
        };
        Ok(self.base + self.range.allocate(etcd, offset).await? as u16)
    }

    pub async fn check(&self, etcd: &Etcd, port: u16) -> Result<(), AllocError> {
        if port < self.base || port > self.last {
            return Err(AllocError::OutOfRange);
        }
        self.range.check(etcd, (port - self.base) as u32).await
    }

    pub async fn release(&self, etcd: &Etcd, port: u16) -> Result<(), AllocError> {
        if port < self.base || port > self.last {
            return Ok(());
        }
        self.range.release(etcd, (port - self.base) as u32).await
    }
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("invalid port range {s:?}: want BASE-LAST"))?;
    let a: u16 = a.trim().parse().map_err(|_| format!("invalid port range {s:?}"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("invalid port range {s:?}"))?;
    if a == 0 || b < a {
        return Err(format!("invalid port range {s:?}"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap() {
        let mut d = vec![0u8; 2];
        mark(&mut d, 9, true);
        assert!(is_set(&d, 9) && !is_set(&d, 8));
        mark(&mut d, 9, false);
        assert!(!is_set(&d, 9));
    }

    #[test]
    fn picks_free_and_skips_reserved() {
        let r = Range::new("k".into(), "x".into(), 4, vec![0, 3]);
        let mut d = vec![0u8; 1];
        for _ in 0..10 {
            let o = r.pick_free(&d).unwrap();
            assert!(o == 1 || o == 2);
        }
        mark(&mut d, 1, true);
        mark(&mut d, 2, true);
        assert_eq!(r.pick_free(&d), None);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767"), Ok((30000, 32767)));
        assert!(parse_port_range("3-1").is_err());
        assert!(parse_port_range("abc").is_err());
    }
}
