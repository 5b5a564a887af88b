//! Azure OpenAI: OpenAI's wire format with the deployment in the path, an `api-version`
//! query parameter and an `api-key` header. Bodies are handled by `openai`.

use super::{CallType, Error};
use crate::deployment::Deployment;

/// Used when neither `api_version` nor `AZURE_API_VERSION` is set.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub fn url(dep: &Deployment, call: CallType) -> Result<String, Error> {
    if dep.api_base.is_empty() {
        return Err(Error::invalid_request(
            "azure",
            "azure deployment has no api_base",
        ));
    }
    let version = dep.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
    Ok(format!(
        "{}/openai/deployments/{}/{}?api-version={}",
        dep.api_base,
        dep.upstream_model,
        call.openai_path(),
        version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Wire;

    #[test]
    fn url_puts_deployment_in_path_and_version_in_query() {
        let mut d = crate::deployment::test_deployment("a", "g", Wire::Azure);
        d.api_base = "https://x.openai.azure.com".into();
        d.upstream_model = "my-gpt4o".into();
        d.api_version = Some("2024-06-01".into());
        assert_eq!(
            url(&d, CallType::Chat).unwrap(),
            "https://x.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-06-01"
        );
    }
}
