//! rkube-controller (not implemented yet).
