//! The server workload: ServiceAccount, Deployment, Service and PodDisruptionBudget, and the
//! hardened pod template the retention jobs share.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretProjection, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use portcullis_crds::realm::PullPolicy;

use super::Inputs;
use super::config::CONFIG_KEY;
use super::meta::{Owner, annotations, names};

/// Component label of the server pods.
pub const SERVER: &str = "server";
/// Numeric user and group the auth server runs as (non-root, matches the image).
pub const RUN_AS: i64 = 65532;
/// Public listener port.
pub const HTTP_PORT: i32 = 8080;
/// Admin listener port: health, readiness, admin API. Reachable only from the realm's own
/// namespace (NetworkPolicy).
pub const ADMIN_PORT: i32 = 9090;
/// Metrics listener port: only `GET /metrics`, the one port Prometheus may reach. The auth
/// server listens there by default (`--metrics-listen`, default `0.0.0.0:9091`).
pub const METRICS_PORT: i32 = 9091;
/// Where the realm's serving certificate (`kubernetes.io/tls` Secret) is mounted.
pub const TLS_DIR: &str = "/var/run/portcullis/tls";
/// The serving certificate chain in [`TLS_DIR`] (the Secret's `tls.crt`).
pub const TLS_CERT: &str = "/var/run/portcullis/tls/tls.crt";
/// The serving key in [`TLS_DIR`] (the Secret's `tls.key`).
pub const TLS_KEY: &str = "/var/run/portcullis/tls/tls.key";
/// Where the realm manifests are mounted.
pub const CONFIG_DIR: &str = "/etc/portcullis";
/// Where the secrets dir is mounted.
pub const SECRETS_DIR: &str = "/var/run/portcullis/secrets";
/// The auth server binary in the image (the image's entrypoint is the operator).
pub const AUTHSERVER_BINARY: &str = "/usr/local/bin/portcullis-authserver";
/// The default image repository.
pub const DEFAULT_IMAGE: &str = "ghcr.io/portcullis-dev/portcullis";

/// Where the containers' termination message is read from (Kubernetes' default, stated
/// explicitly: the retention Job passes the same path to `retention run`).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// `--config` and `--secrets-dir` arguments every auth server command takes.
pub fn config_args() -> Vec<String> {
    vec![
        "--config".to_owned(),
        format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        "--secrets-dir".to_owned(),
        SECRETS_DIR.to_owned(),
    ]
}

/// The ServiceAccount of the realm's pods; its token is never mounted.
pub fn service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(names::server(&owner.realm), SERVER),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

fn image(inputs: &Inputs<'_>) -> (String, String) {
    let spec = inputs.settings.spec.image.as_ref();
    let repository = spec.map_or(DEFAULT_IMAGE, |i| i.repository.as_str());
    let tag = spec
        .and_then(|i| i.tag.as_deref())
        .unwrap_or(env!("CARGO_PKG_VERSION"));
    let pull = match spec.map(|i| i.pull_policy).unwrap_or_default() {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    };
    (format!("{repository}:{tag}"), pull.to_owned())
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn projection(secret: &str, items: Option<Vec<KeyToPath>>) -> VolumeProjection {
    VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.to_owned(),
            items,
            optional: Some(false),
        }),
        ..Default::default()
    }
}

fn item(key: &str, path: String) -> Option<Vec<KeyToPath>> {
    Some(vec![KeyToPath {
        key: key.to_owned(),
        path,
        mode: None,
    }])
}

/// The secrets dir: the keys Secret plus every referenced Secret key under its file name.
fn secrets_volume(inputs: &Inputs<'_>) -> Volume {
    let spec = &inputs.settings.spec;
    let mut sources = vec![projection(&names::keys(&inputs.owner.realm), None)];
    for provider in &spec.social_providers {
        let reference = &provider.client_secret_ref;
        sources.push(projection(
            &reference.name,
            item(
                &reference.key,
                format!("social-{}-client-secret", provider.name),
            ),
        ));
    }
    if let Some(notifications) = &spec.notifications {
        if let Some(smtp) = &notifications.smtp {
            sources.push(projection(
                &smtp.secret_ref.name,
                item(&smtp.secret_ref.key, "smtp-url".to_owned()),
            ));
        }
        if let Some(webhook) = &notifications.webhook {
            sources.push(projection(
                &webhook.url_secret_ref.name,
                item(&webhook.url_secret_ref.key, "webhook-url".to_owned()),
            ));
        }
    }
    Volume {
        name: "secrets".to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(sources),
        }),
        ..Default::default()
    }
}

/// The container security context every realm container gets.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

fn default_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("100m")),
            ("memory".to_owned(), quantity("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The hardened pod template running `args` with the realm's config, secrets and identity.
/// `component` labels the pods; the server also gets ports and probes.
pub fn pod_template(
    inputs: &Inputs<'_>,
    component: &str,
    args: Vec<String>,
    restart_policy: Option<&str>,
) -> PodTemplateSpec {
    let owner = &inputs.owner;
    let spec = &inputs.settings.spec;
    let overrides = spec.pod.clone().unwrap_or_default();
    let (image, pull_policy) = image(inputs);
    let server = component == SERVER;

    let mut env = vec![secret_env(
        "DATABASE_URL",
        &spec.database.secret_ref.name,
        &spec.database.secret_ref.key,
    )];
    if let Some(redis) = &spec.redis {
        env.push(secret_env(
            "REDIS_URL",
            &redis.secret_ref.name,
            &redis.secret_ref.key,
        ));
    }

    let mut labels = overrides.labels.clone();
    labels.extend(owner.labels(component));
    let mut pod_annotations = overrides.annotations.clone();
    pod_annotations.insert(
        annotations::CONFIG_CHECKSUM.to_owned(),
        inputs.checksums.config.clone(),
    );
    pod_annotations.insert(
        annotations::SECRETS_CHECKSUM.to_owned(),
        inputs.checksums.secrets.clone(),
    );

    let topology_spread = if !server {
        None
    } else if overrides.topology_spread.is_empty() {
        Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(owner.component_selector(SERVER)),
            ..Default::default()
        }])
    } else {
        Some(overrides.topology_spread.clone())
    };

    let mut mounts = vec![
        VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "secrets".to_owned(),
            mount_path: SECRETS_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..Default::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config(&owner.realm),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        },
        secrets_volume(inputs),
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("16Mi".to_owned())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    // The server serves TLS on its public listener when the realm has a certificate: the
    // Secret is mounted as a directory (not subPath), so a renewed certificate appears in
    // the pod without a restart.
    if let (true, Some(tls_secret)) = (server, super::tls::tls_secret_name(inputs)) {
        mounts.push(VolumeMount {
            name: "tls".to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls_secret),
                default_mode: Some(0o440),
                items: Some(vec![
                    KeyToPath {
                        key: "tls.crt".to_owned(),
                        path: "tls.crt".to_owned(),
                        mode: None,
                    },
                    KeyToPath {
                        key: "tls.key".to_owned(),
                        path: "tls.key".to_owned(),
                        mode: None,
                    },
                ]),
                optional: Some(false),
            }),
            ..Default::default()
        });
    }
    let container = Container {
        name: component.to_owned(),
        image: Some(image),
        image_pull_policy: Some(pull_policy),
        command: Some(vec![AUTHSERVER_BINARY.to_owned()]),
        args: Some(args),
        env: Some(env),
        ports: server.then(|| {
            vec![
                ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: HTTP_PORT,
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("admin".to_owned()),
                    container_port: ADMIN_PORT,
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("metrics".to_owned()),
                    container_port: METRICS_PORT,
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
            ]
        }),
        liveness_probe: server.then(|| probe("/healthz", 10, 3)),
        readiness_probe: server.then(|| probe("/readyz", 5, 2)),
        resources: Some(
            overrides
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    };

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(pod_annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names::server(&owner.realm)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            node_selector: (!overrides.node_selector.is_empty())
                .then(|| overrides.node_selector.clone()),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            affinity: overrides.affinity.clone(),
            topology_spread_constraints: topology_spread,
            priority_class_name: overrides.priority_class_name.clone(),
            restart_policy: restart_policy.map(str::to_owned),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
    }
}

/// The auth server Deployment.
pub fn deployment(inputs: &Inputs<'_>) -> Deployment {
    let owner = &inputs.owner;
    let mut args = vec!["serve".to_owned()];
    args.extend(config_args());
    args.extend([
        "--listen".to_owned(),
        format!("0.0.0.0:{HTTP_PORT}"),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{ADMIN_PORT}"),
    ]);
    // The metrics listener keeps the auth server's default, 0.0.0.0:METRICS_PORT.
    if super::tls::tls_secret_name(inputs).is_some() {
        args.extend([
            "--tls-cert".to_owned(),
            TLS_CERT.to_owned(),
            "--tls-key".to_owned(),
            TLS_KEY.to_owned(),
        ]);
    }
    Deployment {
        metadata: owner.meta(names::server(&owner.realm), SERVER),
        spec: Some(DeploymentSpec {
            replicas: Some(inputs.settings.spec.replicas),
            revision_history_limit: Some(5),
            selector: owner.component_selector(SERVER),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: pod_template(inputs, SERVER, args, None),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service in front of the server pods: `http` for traffic (HTTPS when the realm has a
/// certificate), `admin` for health and the admin API, `metrics` for Prometheus.
pub fn service(owner: &Owner) -> Service {
    let port = |name: &str, number: i32| ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    Service {
        metadata: owner.meta(names::server(&owner.realm), SERVER),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: owner.component_selector(SERVER).match_labels,
            ports: Some(vec![
                port("http", HTTP_PORT),
                port("admin", ADMIN_PORT),
                port("metrics", METRICS_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// At most one server pod voluntarily evicted at a time.
pub fn pod_disruption_budget(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(names::server(&owner.realm), SERVER),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.component_selector(SERVER)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
