//! ConfigMap strategy (upstream `pkg/registry/core/configmap`): its data
//! keys must be usable as file names and environment variable names.

use serde_json::Value;

use super::strategy::Strategy;
use super::validation;
use crate::status::FieldError;

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::data_keys(obj)
    }
}
