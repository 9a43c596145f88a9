//! Secret strategy (upstream `pkg/registry/core/secret`): `Opaque` unless
//! told otherwise, data keys checked, selectable by `type`.

use serde_json::Value;

use super::defaults;
use super::strategy::Strategy;
use super::validation;
use crate::status::FieldError;

pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::secret(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::data_keys(obj)
    }
}
