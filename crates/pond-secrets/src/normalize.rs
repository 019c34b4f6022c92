//! The one normalisation point for credentials: secret types, the options each
//! accepts, how their names and values are spelled, and which are sensitive.
//! Every credential Pond stores passes through [`normalize`] before it is sealed.

use std::collections::BTreeMap;

use crate::redact::parse_keyword_values;
use crate::{Error, Result};

/// The secret types Pond knows, as written in `TYPE …`.
pub const SECRET_TYPES: &[&str] = &["s3", "aws", "gcp", "postgres", "http"];

const S3_OPTIONS: &[&str] = &["KEY_ID", "SECRET", "SESSION_TOKEN", "REGION", "ENDPOINT", "URL_STYLE", "USE_SSL", "SCOPE"];
const AWS_OPTIONS: &[&str] =
    &["KEY_ID", "SECRET", "SESSION_TOKEN", "REGION", "ENDPOINT", "URL_STYLE", "USE_SSL", "SCOPE", "ROLE_ARN", "EXTERNAL_ID", "PROFILE"];
const GCP_OPTIONS: &[&str] = &["SERVICE_ACCOUNT_JSON", "SERVICE_ACCOUNT_FILE", "PROJECT"];
const POSTGRES_OPTIONS: &[&str] = &["CONNECTION_STRING", "HOST", "PORT", "USER", "PASSWORD", "DATABASE", "SSLMODE"];
/// Credentials for an HTTP source of an import job (InfluxDB 1.x, a JSON endpoint): basic or bearer.
const HTTP_OPTIONS: &[&str] = &["USER", "PASSWORD", "BEARER_TOKEN"];
/// The postgres options that spell out what a `CONNECTION_STRING` would hold.
const POSTGRES_PARTS: &[&str] = &["HOST", "PORT", "USER", "PASSWORD", "DATABASE", "SSLMODE"];

const SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
const SERVICE_ACCOUNT_FIELDS: &[&str] = &["client_email", "private_key", "token_uri"];

/// The upper-case option names a secret type accepts; `None` for an unknown
/// type. The type is matched case-insensitively.
pub fn allowed_options(secret_type: &str) -> Option<&'static [&'static str]> {
    match secret_type.to_ascii_lowercase().as_str() {
        "s3" => Some(S3_OPTIONS),
        "aws" => Some(AWS_OPTIONS),
        "gcp" => Some(GCP_OPTIONS),
        "postgres" => Some(POSTGRES_OPTIONS),
        "http" => Some(HTTP_OPTIONS),
        _ => None,
    }
}

/// Whether an option's value must never be shown: `SECRET`, `SESSION_TOKEN`,
/// `PASSWORD`, `BEARER_TOKEN`, `SERVICE_ACCOUNT_JSON` and `CONNECTION_STRING` (which may carry a
/// password; show it through [`redact_connection_string`](crate::redact_connection_string)).
/// The name is matched case-insensitively.
pub fn is_sensitive(option: &str) -> bool {
    ["SECRET", "SESSION_TOKEN", "PASSWORD", "SERVICE_ACCOUNT_JSON", "CONNECTION_STRING", "BEARER_TOKEN"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(option))
}

/// A secret name as Pond stores it: letters, digits and `_`, not starting with a
/// digit, folded to lower case.
pub fn normalize_name(name: &str) -> Result<String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::InvalidName { name: name.to_string() });
    }
    Ok(name.to_ascii_lowercase())
}

/// A secret type as Pond stores it (lower case), or [`Error::UnknownType`].
pub fn normalize_type(secret_type: &str) -> Result<String> {
    let lower = secret_type.trim().to_ascii_lowercase();
    if SECRET_TYPES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(Error::UnknownType { secret_type: secret_type.to_string() })
    }
}

/// Validates a secret's options for its type and returns them normalised: names
/// in upper case, enumerated values (`URL_STYLE`, `USE_SSL`, `SSLMODE`) in lower
/// case, everything else as given. Rejects unknown types and options (naming the
/// allowed ones), options given twice, empty values, malformed values and
/// incomplete combinations (`KEY_ID` without `SECRET`, …). A `TYPE` entry equal
/// to `secret_type` is ignored. Error messages never contain sensitive values.
pub fn normalize<K: AsRef<str>, V: Into<String>>(
    secret_type: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<BTreeMap<String, String>> {
    let secret_type = normalize_type(secret_type)?;
    let allowed = allowed_options(&secret_type).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (name, value) in options {
        let name = name.as_ref().trim().to_ascii_uppercase();
        let value: String = value.into();
        if name == "TYPE" {
            if normalize_type(&value).ok().as_deref() == Some(secret_type.as_str()) {
                continue;
            }
            return Err(Error::Invalid(format!("TYPE {value} contradicts the secret's type {secret_type}")));
        }
        if !allowed.contains(&name.as_str()) {
            return Err(Error::UnknownOption { secret_type, option: name });
        }
        if out.contains_key(&name) {
            return Err(Error::Invalid(format!("option {name} is given twice")));
        }
        if value.is_empty() {
            return Err(Error::Invalid(format!("option {name} is empty: give it a value or leave it out")));
        }
        let value = normalize_value(&name, value)?;
        out.insert(name, value);
    }
    check_combination(&secret_type, &out)?;
    Ok(out)
}

fn normalize_value(name: &str, value: String) -> Result<String> {
    let one_of = |choices: &[&str]| {
        let lower = value.to_ascii_lowercase();
        if choices.contains(&lower.as_str()) {
            Ok(lower)
        } else {
            Err(Error::Invalid(format!("{name} must be one of {}, not '{value}'", choices.join(", "))))
        }
    };
    match name {
        "URL_STYLE" => one_of(&["path", "vhost"]),
        "USE_SSL" => one_of(&["true", "false"]),
        "SSLMODE" => one_of(SSL_MODES),
        "PORT" => match value.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port.to_string()),
            _ => Err(Error::Invalid(format!("PORT must be a number from 1 to 65535, not '{value}'"))),
        },
        "ROLE_ARN" if !(value.starts_with("arn:") && value.contains(":role/")) => {
            Err(Error::Invalid(format!("ROLE_ARN must be an IAM role ARN such as arn:aws:iam::123456789012:role/name, not '{value}'")))
        }
        "SERVICE_ACCOUNT_JSON" => check_service_account_json(&value).map(|()| value),
        "CONNECTION_STRING" => check_connection_string(&value).map(|()| value),
        _ => Ok(value),
    }
}

fn check_service_account_json(text: &str) -> Result<()> {
    // serde_json's message names only the position, never the text; still,
    // build the message from the position alone.
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Invalid(format!("SERVICE_ACCOUNT_JSON is not valid JSON (line {}, column {})", e.line(), e.column())))?;
    let Some(object) = json.as_object() else {
        return Err(Error::Invalid("SERVICE_ACCOUNT_JSON must be a JSON object (a service account key file)".into()));
    };
    let missing: Vec<&str> = SERVICE_ACCOUNT_FIELDS
        .iter()
        .copied()
        .filter(|field| object.get(*field).and_then(|v| v.as_str()).is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "SERVICE_ACCOUNT_JSON lacks {} (a service account key file from the Google Cloud console has {})",
            missing.join(", "),
            SERVICE_ACCOUNT_FIELDS.join(", ")
        )));
    }
    Ok(())
}

fn check_connection_string(text: &str) -> Result<()> {
    let lower = text.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(());
    }
    match parse_keyword_values(text) {
        Some(pairs) if !pairs.is_empty() => Ok(()),
        _ => Err(Error::Invalid(
            "CONNECTION_STRING is neither a postgresql:// URI nor keyword=value pairs (host=… port=… user=… dbname=…)".into(),
        )),
    }
}

fn check_combination(secret_type: &str, options: &BTreeMap<String, String>) -> Result<()> {
    let has = |name: &str| options.contains_key(name);
    let invalid = |message: &str| Err(Error::Invalid(format!("{secret_type} secret: {message}")));
    match secret_type {
        "s3" | "aws" => {
            if has("KEY_ID") && !has("SECRET") {
                return invalid("KEY_ID needs SECRET (the secret access key)");
            }
            if has("SECRET") && !has("KEY_ID") {
                return invalid("SECRET needs KEY_ID (the access key id)");
            }
            if has("SESSION_TOKEN") && !has("KEY_ID") {
                return invalid("SESSION_TOKEN needs KEY_ID and SECRET");
            }
            if has("EXTERNAL_ID") && !has("ROLE_ARN") {
                return invalid("EXTERNAL_ID needs ROLE_ARN");
            }
        }
        "gcp" => match (has("SERVICE_ACCOUNT_JSON"), has("SERVICE_ACCOUNT_FILE")) {
            (true, true) => return invalid("give SERVICE_ACCOUNT_JSON or SERVICE_ACCOUNT_FILE, not both"),
            (false, false) => return invalid("needs SERVICE_ACCOUNT_JSON (the key file's content) or SERVICE_ACCOUNT_FILE (its path)"),
            _ => {}
        },
        "http" => {
            if has("BEARER_TOKEN") && (has("USER") || has("PASSWORD")) {
                return invalid("give USER and PASSWORD (basic) or BEARER_TOKEN, not both");
            }
            if has("PASSWORD") && !has("USER") {
                return invalid("PASSWORD needs USER");
            }
            if !has("USER") && !has("BEARER_TOKEN") {
                return invalid("needs USER (and PASSWORD) or BEARER_TOKEN");
            }
        }
        "postgres" => {
            let parts: Vec<&str> = POSTGRES_PARTS.iter().copied().filter(|p| has(p)).collect();
            if has("CONNECTION_STRING") && !parts.is_empty() {
                return invalid(&format!("give CONNECTION_STRING or {}, not both", parts.join(", ")));
            }
            if !has("CONNECTION_STRING") && !has("HOST") {
                return invalid("needs CONNECTION_STRING or HOST (with PORT, USER, PASSWORD, DATABASE, SSLMODE as needed)");
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(secret_type: &str, options: &[(&str, &str)]) -> BTreeMap<String, String> {
        normalize(secret_type, options.iter().copied()).unwrap()
    }

    fn err(secret_type: &str, options: &[(&str, &str)]) -> String {
        normalize(secret_type, options.iter().copied()).unwrap_err().to_string()
    }

    const SA_JSON: &str = r#"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#;

    #[test]
    fn s3_options_are_upper_cased_and_enumerations_lower_cased() {
        let got =
            ok("S3", &[("key_id", "AKIA1"), ("Secret", "s/ecret"), ("url_style", "PATH"), ("USE_SSL", "FALSE"), ("region", "us-east-1")]);
        assert_eq!(got["KEY_ID"], "AKIA1");
        assert_eq!(got["SECRET"], "s/ecret");
        assert_eq!(got["URL_STYLE"], "path");
        assert_eq!(got["USE_SSL"], "false");
        assert_eq!(got["REGION"], "us-east-1");
        // Only endpoint settings, no keys: allowed (credentials from elsewhere).
        assert_eq!(ok("s3", &[("ENDPOINT", "localhost:9000"), ("SCOPE", "s3://bucket/")]).len(), 2);
        // A TYPE entry that agrees is ignored.
        assert_eq!(ok("s3", &[("TYPE", "S3"), ("REGION", "eu")]).len(), 1);
    }

    #[test]
    fn unknown_type_and_option_name_what_is_allowed() {
        let e = err("azure", &[]);
        assert!(e.contains("'azure'") && e.contains("s3, aws, gcp, postgres"), "{e}");
        let e = err("s3", &[("ROLE_ARN", "arn:aws:iam::1:role/x")]);
        assert!(e.contains("ROLE_ARN") && e.contains("type s3") && e.contains("KEY_ID, SECRET, SESSION_TOKEN"), "{e}");
        let e = err("postgres", &[("HOSTNAME", "x")]);
        assert!(e.contains("HOSTNAME") && e.contains("CONNECTION_STRING, HOST, PORT"), "{e}");
    }

    #[test]
    fn incomplete_or_contradicting_options_are_rejected() {
        assert!(err("s3", &[("KEY_ID", "AKIA")]).contains("KEY_ID needs SECRET"));
        assert!(err("s3", &[("SECRET", "x")]).contains("SECRET needs KEY_ID"));
        assert!(err("aws", &[("SESSION_TOKEN", "t")]).contains("SESSION_TOKEN needs KEY_ID"));
        assert!(err("aws", &[("EXTERNAL_ID", "e")]).contains("EXTERNAL_ID needs ROLE_ARN"));
        assert!(err("s3", &[("REGION", "a"), ("region", "b")]).contains("given twice"));
        assert!(err("s3", &[("REGION", "")]).contains("REGION is empty"));
        assert!(err("s3", &[("TYPE", "gcp")]).contains("contradicts"));
        let e = err("s3", &[("URL_STYLE", "virtual")]);
        assert!(e.contains("path, vhost") && e.contains("'virtual'"), "{e}");
        assert!(err("s3", &[("USE_SSL", "yes")]).contains("true, false"));
        assert!(err("aws", &[("ROLE_ARN", "my-role")]).contains("IAM role ARN"));
    }

    #[test]
    fn aws_accepts_roles_and_profiles() {
        let got = ok("aws", &[("ROLE_ARN", "arn:aws:iam::123456789012:role/reader"), ("EXTERNAL_ID", "x"), ("PROFILE", "prod")]);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn gcp_service_account_json_is_checked_without_echoing_it() {
        let got = ok("gcp", &[("SERVICE_ACCOUNT_JSON", SA_JSON), ("PROJECT", "p1")]);
        assert_eq!(got["SERVICE_ACCOUNT_JSON"], SA_JSON);
        assert_eq!(ok("gcp", &[("SERVICE_ACCOUNT_FILE", "/etc/sa.json")]).len(), 1);
        let e = err("gcp", &[("SERVICE_ACCOUNT_JSON", "{\"private_key\": \"hunter2")]);
        assert!(e.contains("not valid JSON") && !e.contains("hunter2"), "{e}");
        let e = err("gcp", &[("SERVICE_ACCOUNT_JSON", r#"{"private_key":"hunter2","client_email":"a@b"}"#)]);
        assert!(e.contains("lacks token_uri") && !e.contains("hunter2"), "{e}");
        assert!(err("gcp", &[("SERVICE_ACCOUNT_JSON", "[1]")]).contains("JSON object"));
        assert!(err("gcp", &[("PROJECT", "p")]).contains("needs SERVICE_ACCOUNT_JSON"));
        assert!(err("gcp", &[("SERVICE_ACCOUNT_JSON", SA_JSON), ("SERVICE_ACCOUNT_FILE", "/x")]).contains("not both"));
    }

    #[test]
    fn postgres_takes_a_connection_string_or_its_parts() {
        assert_eq!(ok("postgres", &[("CONNECTION_STRING", "postgresql://u:p@h:5432/db")]).len(), 1);
        assert_eq!(ok("postgres", &[("CONNECTION_STRING", "host=h user=u password='a b' dbname=d")]).len(), 1);
        let got = ok("postgres", &[("host", "h"), ("port", "5432"), ("sslmode", "VERIFY-FULL"), ("password", "pw")]);
        assert_eq!(got["PORT"], "5432");
        assert_eq!(got["SSLMODE"], "verify-full");
        assert!(err("postgres", &[("HOST", "h"), ("PORT", "70000")]).contains("1 to 65535"));
        assert!(err("postgres", &[("HOST", "h"), ("SSLMODE", "on")]).contains("verify-full"));
        assert!(err("postgres", &[("CONNECTION_STRING", "postgres://h/d"), ("PASSWORD", "p")]).contains("not both"));
        assert!(err("postgres", &[("USER", "u")]).contains("needs CONNECTION_STRING or HOST"));
        let e = err("postgres", &[("CONNECTION_STRING", "host=h password='unterminated")]);
        assert!(e.contains("keyword=value") && !e.contains("unterminated"), "{e}");
    }

    #[test]
    fn sensitive_options() {
        for name in ["SECRET", "session_token", "PASSWORD", "SERVICE_ACCOUNT_JSON", "CONNECTION_STRING"] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["KEY_ID", "REGION", "HOST", "USER", "SERVICE_ACCOUNT_FILE", "ROLE_ARN"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn names_are_checked_and_folded() {
        assert_eq!(normalize_name("S3_Prod").unwrap(), "s3_prod");
        assert_eq!(normalize_name("_x1").unwrap(), "_x1");
        for bad in ["", "1abc", "a-b", "a b", "é"] {
            assert!(matches!(normalize_name(bad), Err(Error::InvalidName { .. })), "{bad}");
        }
    }
}
