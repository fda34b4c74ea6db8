//! The NGINX mapping: the Ingress annotations and the generated configuration enforce the same
//! numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use super::*;
use crate::resources::tests::full;

fn limits(requests_per_second: u32, burst: u32) -> NginxLimits {
    NginxLimits {
        enabled: true,
        requests_per_second,
        burst,
        connections: 20,
    }
}

/// `(rps, burst)` → `(limit-burst-multiplier, enforced burst, rounding warning?)`.
#[test]
fn the_burst_becomes_a_whole_multiple_of_the_rate_rounded_up() {
    let table = [
        ((20, 40), (2, 40, false)),
        ((7, 10), (2, 14, true)),
        ((1, 0), (1, 1, true)),
        ((5, 5), (1, 5, false)),
        ((100_000, 1_000_000), (10, 1_000_000, false)),
    ];
    for ((rps, burst), (multiplier, enforced, warns)) in table {
        let p = plan(&limits(rps, burst));
        assert_eq!(
            (p.rate_per_second, p.burst_multiplier, p.burst),
            (rps, multiplier, enforced),
            "rps {rps}, burst {burst}"
        );
        assert_eq!(
            p.rounding_warning().is_some(),
            warns,
            "rps {rps}, burst {burst}"
        );
    }
    assert_eq!(
        plan(&limits(7, 10)).rounding_warning().unwrap(),
        "proxy.nginx burst 10 rounded up to 14 (2 × 7 requests per second): NGINX takes the burst as a multiple of the rate"
    );
}

/// The numbers in a rendered configuration: `rate=` of the zone, `burst=` of `limit_req` and
/// the `limit_conn` count.
fn conf_numbers(conf: &str) -> (u32, u32, u32) {
    let after = |line: &str, key: &str| -> u32 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let line = |start: &str| {
        conf.lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in\n{conf}"))
            .to_owned()
    };
    let conn = line("limit_conn ");
    (
        after(&line("limit_req_zone"), "rate="),
        after(&line("limit_req "), "burst="),
        conn.trim_end_matches(';')
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

#[test]
fn annotations_and_configuration_enforce_the_same_numbers() {
    let settings = full().settings;
    for (rps, burst) in [(20, 40), (7, 10), (1, 0), (100_000, 1_000_000)] {
        let p = plan(&limits(rps, burst));
        let annotations: BTreeMap<&str, u32> = annotations(&p)
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        let (rate, conf_burst, connections) =
            conf_numbers(&render_conf(&settings, &p, &ConfOptions::default()));
        assert_eq!(rate, annotations["limit-rps"], "rps {rps}");
        // ingress-nginx renders `burst = limit-rps × limit-burst-multiplier`.
        assert_eq!(
            conf_burst,
            annotations["limit-rps"] * annotations["limit-burst-multiplier"],
            "rps {rps}, burst {burst}"
        );
        assert_eq!(connections, annotations["limit-connections"]);
    }
}

/// The sample realm's Ingress and the configuration `nginx-config` writes for it agree.
#[test]
fn the_rendered_limit_req_line_matches_the_ingress_of_the_same_realm() {
    let f = full();
    let ingress_annotations = f.children().ingress.unwrap().metadata.annotations.unwrap();
    let get = |k: &str| -> u32 {
        ingress_annotations[&format!("nginx.ingress.kubernetes.io/{k}")]
            .parse()
            .unwrap()
    };
    let p = plan(f.settings.rate_limits.nginx.as_ref().unwrap());
    let (rate, burst, connections) =
        conf_numbers(&render_conf(&f.settings, &p, &ConfOptions::default()));
    assert_eq!(
        (rate, burst, connections),
        (
            get("limit-rps"),
            get("limit-rps") * get("limit-burst-multiplier"),
            get("limit-connections")
        )
    );
    assert_eq!(
        (rate, burst, connections),
        (20, 40, 20),
        "the sample policy"
    );
}

#[test]
fn the_configuration_is_tls_1_2_plus_with_the_realms_hsts_and_never_appends_forwarded_for() {
    let f = full();
    let p = plan(f.settings.rate_limits.nginx.as_ref().unwrap());
    let conf = render_conf(&f.settings, &p, &ConfOptions::default());
    for expected in [
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "listen 0.0.0.0:443 ssl;",
        "server_name login.acme.example;",
        "return 301 https://$host$request_uri;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "limit_req_status 429;",
        "limit_conn_status 429;",
        "zone=portcullis_acme_req:10m rate=20r/s;",
        "upstream portcullis_acme { server 127.0.0.1:8080; keepalive 16; }",
        "\"code\":\"rate_limited\"",
    ] {
        assert!(conf.contains(expected), "{expected} missing from\n{conf}");
    }
    let hsts = format!(
        "add_header Strict-Transport-Security \"max-age={}; includeSubDomains{}\" always;",
        f.settings.spec.security_headers.hsts_max_age,
        if f.settings.spec.security_headers.hsts_preload {
            "; preload"
        } else {
            ""
        }
    );
    assert_eq!(
        conf.matches(&hsts).count(),
        2,
        "on the server and on the 429 location"
    );
    for forbidden in ["$proxy_add_x_forwarded_for", "TLSv1.1", "TLSv1 ", "SSLv3"] {
        assert!(!conf.contains(forbidden), "{forbidden} in\n{conf}");
    }
    assert!(
        !conf.contains("set_real_ip_from"),
        "no real-IP trust without --real-ip-from"
    );
}

#[test]
fn real_ip_lines_appear_only_for_the_given_load_balancers() {
    let f = full();
    let p = plan(f.settings.rate_limits.nginx.as_ref().unwrap());
    let options = ConfOptions {
        server_name: Some("auth.example.org".to_owned()),
        real_ip_from: vec!["10.0.0.0/8".to_owned(), "192.168.0.0/16".to_owned()],
        ..ConfOptions::default()
    };
    let conf = render_conf(&f.settings, &p, &options);
    assert!(conf.contains("  set_real_ip_from 10.0.0.0/8;\n  set_real_ip_from 192.168.0.0/16;\n"));
    assert!(conf.contains("real_ip_header X-Forwarded-For;"));
    assert!(conf.contains("real_ip_recursive on;"));
    assert!(conf.contains("server_name auth.example.org;"));
}

#[test]
fn an_nginx_the_realm_does_not_trust_is_warned_about() {
    let settings = full().settings; // trusts 10.0.0.0/8 and fd00::/8
    assert_eq!(trust_warning(&settings, "10.1.2.3".parse().unwrap()), None);
    let warning = trust_warning(&settings, "127.0.0.1".parse().unwrap()).unwrap();
    assert!(warning.contains("127.0.0.1"), "{warning}");
    assert!(warning.contains("trustedProxies"), "{warning}");
}
