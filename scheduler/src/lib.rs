//! rkube-scheduler (not implemented yet).
