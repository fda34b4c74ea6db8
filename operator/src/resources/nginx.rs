//! The one mapping from a realm's merged `proxy.nginx` limits to NGINX: the Ingress
//! annotations (ingress-nginx) and the configuration `portcullis-operator nginx-config` writes
//! for realms run outside Kubernetes. Both come from one [`NginxPlan`], so they enforce the same
//! numbers. Pure: no I/O.

use portcullis_crds::RealmSettings;
use portcullis_crds::rate_limit::NginxLimits;

/// What NGINX enforces for one realm, per client IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NginxPlan {
    /// Requests per second (`limit-rps`, `limit_req_zone … rate=`).
    pub rate_per_second: u32,
    /// The burst as a multiple of the rate (`limit-burst-multiplier`), at least 1.
    pub burst_multiplier: u32,
    /// The burst NGINX enforces: `rate_per_second × burst_multiplier` (`limit_req … burst=`).
    pub burst: u32,
    /// Concurrent connections (`limit-connections`, `limit_conn`).
    pub connections: u32,
    /// The burst the policies asked for, before rounding up to a multiple of the rate.
    pub requested_burst: u32,
}

impl NginxPlan {
    /// A warning when the enforced burst differs from the requested one: ingress-nginx takes
    /// the burst as a whole multiple of the rate, so the burst is rounded up to one.
    pub fn rounding_warning(&self) -> Option<String> {
        (self.burst != self.requested_burst).then(|| {
            format!(
                "proxy.nginx burst {} rounded up to {} ({} × {} requests per second): NGINX takes the burst as a multiple of the rate",
                self.requested_burst, self.burst, self.burst_multiplier, self.rate_per_second
            )
        })
    }
}

/// The plan of `limits`: the multiplier is `max(1, ⌈burst / rps⌉)`, the enforced burst
/// `rps × multiplier`.
pub fn plan(limits: &NginxLimits) -> NginxPlan {
    let rate_per_second = limits.requests_per_second.max(1);
    let burst_multiplier = limits.burst.div_ceil(rate_per_second).max(1);
    NginxPlan {
        rate_per_second,
        burst_multiplier,
        burst: rate_per_second.saturating_mul(burst_multiplier),
        connections: limits.connections.max(1),
        requested_burst: limits.burst,
    }
}

/// The ingress-nginx annotations (without their `nginx.ingress.kubernetes.io/` prefix):
/// `limit-rps`, `limit-burst-multiplier` and `limit-connections`.
pub fn annotations(plan: &NginxPlan) -> [(&'static str, String); 3] {
    [
        ("limit-rps", plan.rate_per_second.to_string()),
        ("limit-burst-multiplier", plan.burst_multiplier.to_string()),
        ("limit-connections", plan.connections.to_string()),
    ]
}

/// Where the generated server listens and what it proxies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfOptions {
    /// `server_name`; the issuer's host when `None`.
    pub server_name: Option<String>,
    /// HTTPS listen address.
    pub listen: String,
    /// Plain HTTP listen address (redirects to HTTPS).
    pub http_listen: String,
    /// The auth server's address.
    pub upstream: String,
    /// Certificate chain file.
    pub tls_cert: String,
    /// Private key file.
    pub tls_key: String,
    /// Load balancers in front of NGINX whose `X-Forwarded-For` NGINX believes (CIDRs).
    pub real_ip_from: Vec<String>,
}

impl Default for ConfOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            listen: "0.0.0.0:443".to_owned(),
            http_listen: "0.0.0.0:80".to_owned(),
            upstream: "127.0.0.1:8080".to_owned(),
            tls_cert: "/etc/portcullis/tls/tls.crt".to_owned(),
            tls_key: "/etc/portcullis/tls/tls.key".to_owned(),
            real_ip_from: Vec::new(),
        }
    }
}

/// TLS 1.2 cipher suites (TLS 1.3 suites are not configurable and all strong): ECDHE with AEAD
/// only.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// The body of NGINX's own 429 answers: the problem+json of API.md.
const LIMITED_BODY: &str = r#"{"type":"about:blank","title":"Too many requests","status":429,"code":"rate_limited","detail":"too many requests at the proxy"}"#;

/// The host of the issuer without a port.
fn issuer_host(settings: &RealmSettings) -> String {
    let host = &settings.issuer_host;
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host.clone(), |(h, _)| h.to_owned())
}

/// The realm's `Strict-Transport-Security` value, as the auth server sends it.
fn hsts(settings: &RealmSettings) -> String {
    let headers = &settings.spec.security_headers;
    let mut value = format!("max-age={}; includeSubDomains", headers.hsts_max_age);
    if headers.hsts_preload {
        value.push_str("; preload");
    }
    value
}

/// The http-context snippet for `settings` with the limits of `plan` (`config/nginx/portcullis.conf`):
/// a rate and a connection zone per client IP, an HTTP→HTTPS redirect, and a TLS 1.2+ server
/// that proxies to the auth server, answers its own 429s as problem+json, and overwrites
/// `X-Forwarded-For` with the address it saw (or, with `real_ip_from`, the one its load
/// balancer saw).
pub fn render_conf(settings: &RealmSettings, plan: &NginxPlan, options: &ConfOptions) -> String {
    let zone = format!("portcullis_{}", settings.name.replace('-', "_"));
    let server_name = options
        .server_name
        .clone()
        .unwrap_or_else(|| issuer_host(settings));
    let hsts = hsts(settings);
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(
        "# Generated by `portcullis-operator nginx-config` from the realm's RateLimitPolicies; do not edit.",
    );
    line(&format!(
        "# Realm {}: {} requests/s per client IP, burst {}, {} connections.",
        settings.name, plan.rate_per_second, plan.burst, plan.connections
    ));
    line(&format!(
        "limit_req_zone  $binary_remote_addr zone={zone}_req:10m rate={}r/s;",
        plan.rate_per_second
    ));
    line(&format!(
        "limit_conn_zone $binary_remote_addr zone={zone}_conn:10m;"
    ));
    line(&format!(
        "upstream {zone} {{ server {}; keepalive 16; }}",
        options.upstream
    ));
    line(&format!(
        "server {{ listen {}; server_name {server_name}; return 301 https://$host$request_uri; }}",
        options.http_listen
    ));
    line("server {");
    // nginx 1.22 (Debian 12) has no `http2 on;` (1.25.1+).
    line(&format!("  listen {} ssl;", options.listen));
    line(&format!("  server_name {server_name};"));
    line(&format!("  ssl_certificate {};", options.tls_cert));
    line(&format!("  ssl_certificate_key {};", options.tls_key));
    line("  ssl_protocols TLSv1.2 TLSv1.3;");
    line("  ssl_prefer_server_ciphers off;");
    line("  ssl_session_tickets off;");
    line(&format!("  ssl_ciphers {CIPHERS};"));
    line("  # The auth server sends HSTS too: never two.");
    line("  proxy_hide_header Strict-Transport-Security;");
    line(&format!(
        "  add_header Strict-Transport-Security \"{hsts}\" always;"
    ));
    if !options.real_ip_from.is_empty() {
        line("  # The load balancer in front of NGINX: its X-Forwarded-For names the client.");
        for cidr in &options.real_ip_from {
            line(&format!("  set_real_ip_from {cidr};"));
        }
        line("  real_ip_header X-Forwarded-For;");
        line("  real_ip_recursive on;");
    }
    line("  client_max_body_size 64k;");
    line("  limit_req_status 429;");
    line("  limit_conn_status 429;");
    line("  limit_req_log_level warn;");
    line("  location / {");
    line(&format!(
        "    limit_req zone={zone}_req burst={} nodelay;",
        plan.burst
    ));
    line(&format!("    limit_conn {zone}_conn {};", plan.connections));
    line(&format!("    proxy_pass http://{zone};"));
    line("    proxy_http_version 1.1;");
    line("    proxy_set_header Connection \"\";");
    line("    proxy_set_header Host $host;");
    line("    # Overwritten, never appended to: a header the client wrote is not passed on.");
    line("    proxy_set_header X-Forwarded-For $remote_addr;");
    line("    proxy_set_header X-Forwarded-Proto $scheme;");
    line("    proxy_set_header X-Request-Id $request_id;");
    line("  }");
    line("  # NGINX's own 429s as problem+json; proxy_intercept_errors stays off, so the auth");
    line("  # server's 429s pass through with their RateLimit headers.");
    line("  error_page 429 @portcullis_limited;");
    line("  location @portcullis_limited {");
    line("    default_type application/problem+json;");
    line("    add_header Retry-After 1 always;");
    line("    # add_header here drops the server-level ones: repeat HSTS.");
    line(&format!(
        "    add_header Strict-Transport-Security \"{hsts}\" always;"
    ));
    line(&format!("    return 429 '{LIMITED_BODY}';"));
    line("  }");
    line("}");
    out
}

/// Warnings about running `settings` behind NGINX at `upstream_peer` (the address the auth
/// server sees NGINX connect from): when the realm does not trust it, the server sees every
/// client as NGINX, and every per-IP limit becomes one shared bucket.
pub fn trust_warning(settings: &RealmSettings, nginx_address: std::net::IpAddr) -> Option<String> {
    let trusted = settings
        .trusted_proxies
        .iter()
        .any(|cidr| cidr.contains(nginx_address));
    (!trusted).then(|| {
        format!(
            "realm {:?} does not trust {nginx_address} in spec.trustedProxies: the auth server would see every client as NGINX and count all of them in one per-IP bucket",
            settings.name
        )
    })
}

#[cfg(test)]
mod tests;
