//! CRI v1 protobuf (not generated yet).
