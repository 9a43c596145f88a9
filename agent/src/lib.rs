//! rkube-agent (not implemented yet).
