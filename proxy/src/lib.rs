//! rkube-proxy (not implemented yet).
