//! rkube-apiserver
