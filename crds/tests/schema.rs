//! The generated CRDs are what the API server would accept, and they accept exactly the
//! manifests the Rust types and settings accept: samples pass every layer, broken samples are
//! refused by the schema or a CEL rule, and by the settings layer the standalone server uses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kube::core::cel::{Validator as CelValidator, compile_schema};
use portcullis_crds::{RealmSettings, crds, parse_manifests};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `openAPIV3Schema` of a kind, as JSON.
fn schema_of(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn kind_of(object: &Value) -> &str {
    object["kind"].as_str().unwrap()
}

/// Errors of plain OpenAPI validation (types, bounds, patterns, enums, required fields).
fn schema_errors(object: &Value) -> Vec<String> {
    let schema = schema_of(kind_of(object));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .unwrap();
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Errors of the CEL rules (`x-kubernetes-validations`), evaluated client-side with defaults
/// applied first, as the API server does.
fn cel_errors(object: &Value) -> Vec<String> {
    let schema = schema_of(kind_of(object));
    match CelValidator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn read_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Calls `f` on every schema node under `node` (properties, items, additionalProperties),
/// with a JSON-ish path: `.field`, `[]` for items, `{}` for map values.
fn visit(node: &Value, path: &str, f: &mut dyn FnMut(&Value, &str)) {
    f(node, path);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            visit(child, &format!("{path}.{name}"), f);
        }
    }
    if let Some(items) = node.get("items") {
        visit(items, &format!("{path}[]"), f);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        visit(additional, &format!("{path}{{}}"), f);
    }
}

// ---------------------------------------------------------------------------------------------
// Structural schema

/// Every way `node` breaks the Kubernetes structural-schema rules, with JSON paths.
fn structural_violations(node: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "$schema",
        "$id",
        "id",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "const",
        "uniqueItems",
    ] {
        if map.contains_key(forbidden) {
            out.push(format!("{path}: `{forbidden}` is not allowed"));
        }
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!(
            "{path}: `additionalProperties: false` is refused by apiextensions"
        ));
    }
    let flag = |key: &str| map.get(key) == Some(&Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve = flag("x-kubernetes-preserve-unknown-fields");

    if in_junctor {
        for key in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
            "title",
        ] {
            if map.contains_key(key) {
                out.push(format!(
                    "{path}: `{key}` is not allowed inside anyOf/oneOf/allOf/not"
                ));
            }
        }
        if map.keys().any(|k| k.starts_with("x-kubernetes-")) {
            out.push(format!(
                "{path}: x-kubernetes extensions are not allowed in a junctor"
            ));
        }
    } else if !map.contains_key("type") && !int_or_string && !preserve {
        out.push(format!("{path}: no `type`"));
    }

    for junctor in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = map.get(junctor) {
            let expected_int_or_string = json!([{"type": "integer"}, {"type": "string"}]);
            if int_or_string && junctor == "anyOf" && branches == &expected_int_or_string {
                continue;
            }
            for (i, branch) in branches.as_array().unwrap().iter().enumerate() {
                // Properties named in a junctor must also be specified outside it.
                if let Some(props) = branch.get("properties").and_then(Value::as_object) {
                    for name in props.keys() {
                        if map.get("properties").and_then(|p| p.get(name)).is_none() {
                            out.push(format!(
                                "{path}.{junctor}[{i}]: property {name} is not in the outer schema"
                            ));
                        }
                    }
                }
                structural_violations(branch, &format!("{path}.{junctor}[{i}]"), true, out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        structural_violations(not, &format!("{path}.not"), true, out);
    }
    match map.get("type").and_then(Value::as_str) {
        Some("array") if !in_junctor && !map.contains_key("items") => {
            out.push(format!("{path}: array without items"));
        }
        Some("object")
            if map.contains_key("properties") && map.contains_key("additionalProperties") =>
        {
            out.push(format!("{path}: both properties and additionalProperties"));
        }
        _ => {}
    }
    if map.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys = map
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array);
        let items = map.get("items");
        match (keys, items) {
            (Some(keys), Some(items)) => {
                let required: BTreeSet<&str> = items
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for key in keys.iter().filter_map(Value::as_str) {
                    let prop = items.get("properties").and_then(|p| p.get(key));
                    let defaulted = prop.is_some_and(|p| p.get("default").is_some());
                    if prop.is_none() || !(required.contains(key) || defaulted) {
                        out.push(format!("{path}: list-map key {key} must be a required or defaulted item property"));
                    }
                }
            }
            _ => out.push(format!(
                "{path}: list-type map needs list-map-keys and items"
            )),
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_violations(child, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), in_junctor, out);
    }
    if let Some(additional) = map.get("additionalProperties").filter(|a| a.is_object()) {
        structural_violations(additional, &format!("{path}{{}}"), in_junctor, out);
    }
}

/// Paths of nodes that carry `extension: true`.
fn paths_with(node: &Value, extension: &str, path: &str, out: &mut Vec<String>) {
    visit(node, path, &mut |n, p| {
        if n.get(extension) == Some(&Value::Bool(true)) {
            out.push(p.to_owned());
        }
    });
}

#[test]
fn every_crd_schema_is_structural() {
    for crd in crds() {
        let schema = schema_of(&crd.spec.names.kind);
        let mut violations = Vec::new();
        structural_violations(&schema, &crd.spec.names.kind, false, &mut violations);
        assert!(
            violations.is_empty(),
            "{}:\n{}",
            crd.spec.names.kind,
            violations.join("\n")
        );
    }
}

#[test]
fn the_structural_check_catches_what_the_api_server_refuses() {
    let broken = json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "list": {"type": "array"},
            "ref": {"$ref": "#/definitions/X"},
            "choice": {"type": "object", "oneOf": [{"type": "string"}]}
        }
    });
    let mut violations = Vec::new();
    structural_violations(&broken, "T", false, &mut violations);
    let text = violations.join("\n");
    for expected in [
        "T.untyped: no `type`",
        "T.list: array without items",
        "`$ref` is not allowed",
        "T.choice.oneOf[0]: `type` is not allowed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn int_or_string_appears_only_on_ports_and_quantities() {
    let mut found = Vec::new();
    paths_with(
        &schema_of("AuthRealm"),
        "x-kubernetes-int-or-string",
        "",
        &mut found,
    );
    assert_eq!(
        found,
        [
            ".spec.networkPolicy.egressTo[].ports[].port",
            ".spec.pod.resources.limits{}",
            ".spec.pod.resources.requests{}",
        ]
    );
    for kind in ["RateLimitPolicy", "RetentionPolicy"] {
        let mut found = Vec::new();
        paths_with(
            &schema_of(kind),
            "x-kubernetes-int-or-string",
            "",
            &mut found,
        );
        assert!(found.is_empty(), "{kind}: {found:?}");
    }
}

#[test]
fn no_field_preserves_unknown_fields() {
    for crd in crds() {
        let mut found = Vec::new();
        paths_with(
            &schema_of(&crd.spec.names.kind),
            "x-kubernetes-preserve-unknown-fields",
            "",
            &mut found,
        );
        assert!(found.is_empty(), "{}: {found:?}", crd.spec.names.kind);
    }
}

#[test]
fn every_default_is_valid_against_its_own_schema() {
    for crd in crds() {
        let mut errors = Vec::new();
        visit(&schema_of(&crd.spec.names.kind), "", &mut |node, path| {
            if let Some(default) = node.get("default") {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(node)
                    .unwrap();
                for error in validator.iter_errors(default) {
                    errors.push(format!("{path}: default {default}: {error}"));
                }
            }
        });
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[test]
fn every_cel_rule_compiles() {
    for crd in crds() {
        let compiled = compile_schema(&schema_of(&crd.spec.names.kind));
        let errors: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", crd.spec.names.kind);
    }
}

#[test]
fn crds_fit_in_the_last_applied_configuration_annotation() {
    // `kubectl apply` stores the whole object in an annotation limited to 256 KiB.
    for crd in crds() {
        let size = serde_json::to_vec(&crd).unwrap().len();
        assert!(size < 200 * 1024, "{} is {size} bytes", crd.spec.names.kind);
    }
}

#[test]
fn crds_have_status_subresource_short_names_and_printer_columns() {
    let expected = [
        ("AuthRealm", "realm"),
        ("RateLimitPolicy", "rlp"),
        ("RetentionPolicy", "rtp"),
        ("AuthClient", "aclient"),
    ];
    for (crd, (kind, short)) in crds().iter().zip(expected) {
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.group, "portcullis.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns.last(), Some(&"Age"), "{kind}: {columns:?}");
    }
    for crd in [&crds()[0], &crds()[3]] {
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(columns, ["Ready", "Reason", "Endpoint", "Age"]);
    }
}

#[test]
fn every_spec_field_has_a_description() {
    for crd in crds() {
        let schema = schema_of(&crd.spec.names.kind);
        let mut missing = Vec::new();
        for part in ["spec", "status"] {
            visit(&schema["properties"][part], part, &mut |node, path| {
                for (name, child) in node
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if child
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        missing.push(format!("{path}.{name}"));
                    }
                }
            });
        }
        assert!(
            missing.is_empty(),
            "{}: undocumented {missing:?}",
            crd.spec.names.kind
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Samples

#[test]
fn every_sample_passes_schema_and_cel_and_deserializes() {
    let files = yaml_files(&repo_root().join("config/samples"));
    assert!(
        files.len() >= 5,
        "expected the five samples, found {files:?}"
    );
    for file in files {
        for document in read_documents(&file) {
            let name = format!("{} ({})", file.display(), kind_of(&document));
            assert_eq!(schema_errors(&document), Vec::<String>::new(), "{name}");
            assert_eq!(cel_errors(&document), Vec::<String>::new(), "{name}");
        }
        let text = std::fs::read_to_string(&file).unwrap();
        parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("config/samples").join(name)).unwrap()
}

#[test]
fn the_full_sample_with_its_policies_makes_working_settings() {
    let yaml = [
        "realm-full.yaml",
        "ratelimitpolicy.yaml",
        "retentionpolicy.yaml",
    ]
    .map(sample)
    .join("\n---\n");
    let settings = RealmSettings::from_manifests(&parse_manifests(&yaml).unwrap()).unwrap();
    assert_eq!(settings.name, "acme");
    assert_eq!(settings.spec.replicas, 3);
    assert_eq!(settings.rate_limits.policies, ["acme-login"]);
    assert_eq!(settings.retention.unwrap().policy, "acme-gdpr");
    assert_eq!(settings.trusted_proxies.len(), 2);
}

#[test]
fn the_full_sample_sets_every_spec_field() {
    // Compare the sample's keys with every property the schema defines for the spec, so a
    // field added to the types without a sample fails here.
    fn schema_paths(node: &Value, path: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                out.insert(p.clone());
                if !p.starts_with("spec.pod.")
                    && !p.starts_with("spec.networkPolicy.ingressFrom")
                    && !p.starts_with("spec.networkPolicy.egressTo")
                    && !p.starts_with("spec.networkPolicy.databasePeers")
                    && !p.starts_with("spec.networkPolicy.redisPeers")
                    && !p.starts_with("spec.networkPolicy.smtpPeers")
                {
                    schema_paths(child, &p, out);
                }
            }
        }
        if let Some(items) = node.get("items") {
            schema_paths(items, path, out);
        }
    }
    fn value_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = format!("{path}.{k}");
                    out.insert(p.clone());
                    value_paths(v, &p, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| value_paths(v, path, out)),
            _ => {}
        }
    }
    let schema = schema_of("AuthRealm");
    let mut wanted = BTreeSet::new();
    schema_paths(&schema["properties"]["spec"], "spec", &mut wanted);
    let document = &read_documents(&repo_root().join("config/samples/realm-full.yaml"))[0];
    let mut present = BTreeSet::new();
    value_paths(&document["spec"], "spec", &mut present);
    // tls takes exactly one source: the sample uses issuerRef; the CEL cases cover the others.
    let alternatives = BTreeSet::from([
        "spec.tls.secretName".to_owned(),
        "spec.tls.selfSigned".to_owned(),
    ]);
    let missing: Vec<&String> = wanted
        .difference(&present)
        .filter(|p| !alternatives.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "realm-full.yaml does not set {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Broken samples: each is refused by the layer its header names, with the message it names,
// and by the settings layer a standalone auth server uses.

fn check_invalid_fixture(file: &str) {
    let path = repo_root().join("crds/tests/fixtures/invalid").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let header = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .unwrap_or_else(|| panic!("{file}: no `# {key}:` header"))
            .to_owned()
    };
    let (layer, expected) = (header("rejected-by"), header("error"));
    let document = read_documents(&path).remove(0);
    let errors = match layer.as_str() {
        "schema" => schema_errors(&document),
        "cel" => {
            assert_eq!(
                schema_errors(&document),
                Vec::<String>::new(),
                "{file} must pass the plain schema"
            );
            cel_errors(&document)
        }
        other => panic!("{file}: unknown layer {other}"),
    };
    // Exactly one error: a fixture that is also broken in another way proves nothing about
    // its own rule (the API server reports every cause, and shows it).
    assert!(
        errors.len() == 1 && errors[0].contains(&expected),
        "{file}: expected one error containing {expected:?}, got {errors:?}"
    );

    // The standalone path: policies are checked together with the full sample realm.
    let yaml = if kind_of(&document) == "AuthRealm" {
        text.clone()
    } else {
        format!("{}\n---\n{text}", sample("realm-full.yaml"))
    };
    let standalone = parse_manifests(&yaml)
        .map_err(|e| e.to_string())
        .and_then(|m| RealmSettings::from_manifests(&m).map_err(|e| e.to_string()));
    assert!(
        standalone.is_err(),
        "{file}: the settings layer accepted it"
    );
}

macro_rules! invalid_fixtures {
    ($($test:ident => $file:literal,)*) => {
        $(#[test] fn $test() { check_invalid_fixture($file); })*

        #[test]
        fn every_invalid_fixture_has_a_test() {
            let tested: BTreeSet<&str> = [$($file),*].into_iter().collect();
            let on_disk: BTreeSet<String> = yaml_files(&repo_root().join("crds/tests/fixtures/invalid"))
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
            assert_eq!(tested, on_disk);
        }
    };
}

invalid_fixtures! {
    a_realm_without_issuer_is_rejected => "missing-issuer.yaml",
    a_min_length_of_4_is_rejected => "min-length-4.yaml",
    a_bcrypt_cost_of_20_is_rejected => "bcrypt-cost-20.yaml",
    a_malformed_duration_is_rejected => "bad-duration.yaml",
    a_malformed_cron_schedule_is_rejected => "bad-cron.yaml",
    three_replicas_without_redis_are_rejected => "replicas-without-redis.yaml",
    an_http_issuer_outside_localhost_is_rejected => "http-issuer.yaml",
    two_tls_sources_are_rejected => "tls-two-sources.yaml",
    a_public_client_with_client_credentials_is_rejected => "public-client-credentials.yaml",
    an_oidc_provider_without_issuer_is_rejected => "oidc-provider-without-issuer.yaml",
    required_totp_while_disabled_is_rejected => "totp-required-but-disabled.yaml",
    an_offline_breach_check_without_list_is_rejected => "offline-breach-check-without-list.yaml",
    hsts_preload_with_a_short_max_age_is_rejected => "hsts-preload-short-max-age.yaml",
    a_code_flow_client_without_redirect_uri_is_rejected => "code-flow-without-redirect-uri.yaml",
    an_unknown_route_is_rejected => "unknown-route.yaml",
    a_limit_of_zero_requests_is_rejected => "zero-requests.yaml",
    a_realm_name_starting_with_a_digit_is_rejected => "realm-name-starting-with-a-digit.yaml",
    a_duration_above_its_maximum_is_rejected => "duration-above-maximum.yaml",
    a_retention_policy_name_too_long_for_its_cronjob_is_rejected => "retention-name-too-long.yaml",
    email_verification_without_smtp_is_rejected => "verification-without-smtp.yaml",
}

// ---------------------------------------------------------------------------------------------
// CEL rules, each in an accepting and a rejecting case.

fn minimal_realm() -> Value {
    read_documents(&repo_root().join("config/samples/realm-minimal.yaml")).remove(0)
}

fn with_spec(patch: Value) -> Value {
    let mut realm = minimal_realm();
    let spec = realm["spec"].as_object_mut().unwrap();
    for (k, v) in patch.as_object().unwrap() {
        spec.insert(k.clone(), v.clone());
    }
    realm
}

/// (rule name, accepted spec patch, rejected spec patch, message of the rejection)
fn cel_cases() -> Vec<(&'static str, Value, Value, &'static str)> {
    let redis = json!({"secretRef": {"name": "r"}});
    vec![
        (
            "verification needs smtp",
            json!({"emailVerification": {"required": false}, "notifications": {"webhook": {"urlSecretRef": {"name": "w"}}}}),
            json!({"notifications": {"webhook": {"urlSecretRef": {"name": "w"}}}}),
            "emailVerification.required needs notifications.smtp",
        ),
        (
            "replicas need redis",
            json!({"replicas": 3, "redis": redis}),
            json!({"replicas": 3}),
            "replicas > 1 requires spec.redis",
        ),
        (
            "https issuer",
            json!({"issuer": "http://auth.dev.localhost:8080"}),
            json!({"issuer": "http://auth.example.com"}),
            "issuer must be an https:// URL",
        ),
        (
            "issuer without fragment",
            json!({"issuer": "https://a.example.com/realm"}),
            json!({"issuer": "https://a.example.com/#x"}),
            "must not contain a query or fragment",
        ),
        (
            "one tls source",
            json!({"tls": {"selfSigned": {}}}),
            json!({"tls": {"selfSigned": {}, "issuerRef": {"name": "ca"}}}),
            "exactly one of issuerRef",
        ),
        (
            "tls source present",
            json!({"tls": {"secretName": "t"}}),
            json!({"tls": {}}),
            "exactly one of issuerRef",
        ),
        (
            "totp required needs enabled",
            json!({"mfa": {"totp": {"required": true}}}),
            json!({"mfa": {"totp": {"required": true, "enabled": false}}}),
            "needs mfa.totp.enabled",
        ),
        (
            "offline list",
            json!({"passwordPolicy": {"breachCheck": {"mode": "Offline",
            "offlineListRef": {"name": "l", "key": "k"}}}}),
            json!({"passwordPolicy": {"breachCheck": {"mode": "Offline"}}}),
            "requires offlineListRef",
        ),
        (
            "hsts preload",
            json!({"securityHeaders": {"hstsPreload": true}}),
            json!({"securityHeaders": {"hstsPreload": true, "hstsMaxAge": 600}}),
            "at least one year",
        ),
        (
            "duration maximum in days",
            json!({"lockout": {"window": "1d", "baseLockout": "12h", "maxLockout": "30d"}}),
            json!({"lockout": {"window": "4000000d"}}),
            "lockout.window must be at most 1d",
        ),
        (
            "duration maximum without days",
            json!({"lockout": {"window": "23h59m"}, "sessions": {"idleTimeout": "1d12h", "absoluteTimeout": "2d"}}),
            json!({"lockout": {"window": "25h"}}),
            "lockout.window must be at most 1d",
        ),
        (
            "duration maximum with days and hours",
            json!({"tokens": {"refreshTokenTtl": "399d23h", "refreshIdleTtl": "7d"}}),
            json!({"tokens": {"refreshTokenTtl": "400d1h"}}),
            "tokens.refreshTokenTtl must be at most 400d",
        ),
        (
            "oidc issuer",
            json!({"socialProviders": [{"name": "c", "type": "Oidc", "clientId": "x",
            "clientSecretRef": {"name": "s", "key": "k"}, "issuerUrl": "https://sso.example.com"}]}),
            json!({"socialProviders": [{"name": "c", "type": "GitHub", "clientId": "x",
            "clientSecretRef": {"name": "s", "key": "k"}, "issuerUrl": "https://sso.example.com"}]}),
            "issuerUrl is only for Oidc providers",
        ),
    ]
}

#[test]
fn each_cel_rule_accepts_the_good_case_and_rejects_the_bad_one() {
    for (rule, good, bad, message) in cel_cases() {
        let good = with_spec(good);
        assert_eq!(
            schema_errors(&good),
            Vec::<String>::new(),
            "{rule}: good case schema"
        );
        assert_eq!(cel_errors(&good), Vec::<String>::new(), "{rule}: good case");
        let errors = cel_errors(&with_spec(bad));
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "{rule}: expected {message:?}, got {errors:?}"
        );
    }
}

fn client_doc(spec: Value) -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
        "metadata": {"name": "web", "namespace": "auth"},
        "spec": spec})
}

/// (rule name, accepted AuthClient spec, rejected spec, message of the rejection)
fn client_cel_cases() -> Vec<(&'static str, Value, Value, &'static str)> {
    vec![
        (
            "public client grants",
            json!({"realmRef": {"name": "demo"}, "type": "Public",
            "redirectUris": ["https://a.example.com/cb"]}),
            json!({"realmRef": {"name": "demo"}, "type": "Public",
            "redirectUris": ["https://a.example.com/cb"], "grantTypes": ["client_credentials"]}),
            "cannot use the client_credentials grant",
        ),
        (
            "code flow needs a redirect URI",
            json!({"realmRef": {"name": "demo"}, "type": "Confidential",
            "grantTypes": ["client_credentials"]}),
            json!({"realmRef": {"name": "demo"}, "type": "Confidential"}),
            "needs at least one redirectUri",
        ),
    ]
}

#[test]
fn each_auth_client_cel_rule_accepts_the_good_case_and_the_settings_layer_agrees() {
    let realm =
        std::fs::read_to_string(repo_root().join("config/samples/realm-minimal.yaml")).unwrap();
    for (rule, good, bad, message) in client_cel_cases() {
        let (good, bad) = (client_doc(good), client_doc(bad));
        assert_eq!(
            schema_errors(&good),
            Vec::<String>::new(),
            "{rule}: good schema"
        );
        assert_eq!(cel_errors(&good), Vec::<String>::new(), "{rule}: good case");
        let errors = cel_errors(&bad);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "{rule}: expected {message:?}, got {errors:?}"
        );
        let settings = |client: &Value| {
            let mut client = client.clone();
            client["spec"]["realmRef"]["name"] = json!(minimal_realm()["metadata"]["name"]);
            client["metadata"]["namespace"] = json!(minimal_realm()["metadata"]["namespace"]);
            let yaml = format!("{realm}\n---\n{}", serde_json::to_string(&client).unwrap());
            RealmSettings::from_manifests(&parse_manifests(&yaml).unwrap())
        };
        assert!(settings(&good).is_ok(), "{rule}: good case refused");
        assert!(settings(&bad).is_err(), "{rule}: bad case accepted");
    }
}

#[test]
fn realm_names_longer_than_40_characters_are_rejected_by_cel() {
    let mut realm = minimal_realm();
    realm["metadata"]["name"] = json!("a".repeat(41));
    let errors = cel_errors(&realm);
    assert!(
        errors.iter().any(|e| e.contains("at most 40 characters")),
        "{errors:?}"
    );
}

#[test]
fn the_settings_layer_refuses_what_each_cel_rule_refuses() {
    for (rule, good, bad, _) in cel_cases() {
        let settings = |doc: Value| {
            let yaml = serde_json::to_string(&doc).unwrap();
            RealmSettings::from_manifests(&parse_manifests(&yaml).unwrap())
        };
        assert!(
            settings(with_spec(good)).is_ok(),
            "{rule}: good case refused"
        );
        assert!(
            settings(with_spec(bad)).is_err(),
            "{rule}: bad case accepted"
        );
    }
}

#[test]
fn every_cel_rule_is_in_scope_and_within_the_cost_budget() {
    use kube::core::cel::{ScopeContext, analyze_rule};
    let mut rules_seen = 0;
    for crd in crds() {
        let mut warnings = Vec::new();
        visit(
            &schema_of(&crd.spec.names.kind),
            &crd.spec.names.kind,
            &mut |node, path| {
                let Some(rules) = node
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                else {
                    return;
                };
                let compiled = compile_schema(node);
                for rule in rules.iter().filter_map(|r| r["rule"].as_str()) {
                    rules_seen += 1;
                    for warning in analyze_rule(rule, &compiled, ScopeContext::CrdValidation) {
                        warnings.push(format!("{path}: {rule}: {}", warning.message));
                    }
                }
            },
        );
        assert!(warnings.is_empty(), "{}", warnings.join("\n"));
    }
    assert!(
        rules_seen >= 12,
        "expected every CEL rule to be walked, saw {rules_seen}"
    );
}
