//! `shibafu status`: can this host reach every coordinator it is given and its agent, which
//! versions answer, and when the certificates of a TLS control plane expire (the servers'
//! own, from `GET /v1/health`, and this command's `--tls-cert`).

use std::io::Write;

use anyhow::Context as _;
use shibafu_overlay::api::{Client, ClientError, Health, TunnelReport};

use crate::context::Context;
use crate::output;

/// Probes every coordinator and the agent, prints one row each; fails when any does not answer.
pub async fn run(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let coordinators: Vec<Result<Client, ClientError>> = match ctx.coordinator_targets() {
        Ok(targets) => targets
            .into_iter()
            .map(|t| ctx.coordinator_client(t))
            .collect(),
        Err(e) => vec![Err(e)],
    };
    let mut probes = Vec::new();
    for c in coordinators {
        probes.push(("coordinator", probe(c).await));
    }
    probes.push((
        "agent",
        probe(ctx.agent().map(|a| a.client().clone())).await,
    ));
    let now = crate::cert::now();
    let mut rows: Vec<Vec<String>> = probes
        .iter()
        .map(|(name, (addr, result))| {
            vec![name.to_string(), addr.clone(), status_cell(result, now)]
        })
        .collect();
    if let Some(files) = ctx.tls() {
        let cell = match files.info() {
            Ok(info) => crate::cert::summary(&info, now),
            Err(e) => format!("error: {e}"),
        };
        rows.push(vec![
            "certificate".into(),
            files.cert.display().to_string(),
            cell,
        ]);
    }
    let agent_up = probes.last().is_some_and(|(_, (_, r))| r.is_ok());
    if agent_up {
        if let Ok(report) = ctx.agent()?.tunnel().await {
            rows.push(vec![
                "wireguard".into(),
                format!("{}:{}", report.tunnel, report.port),
                tunnel_cell(&report),
            ]);
        }
    }
    out.write_all(output::table(&["COMPONENT", "ADDRESS", "STATUS"], &rows).as_bytes())
        .context("cannot write to stdout")?;
    let errors: Vec<String> = probes
        .iter()
        .filter_map(|(_, (_, r))| r.as_ref().err().map(ToString::to_string))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(errors.join("\nerror: "))
    }
}

/// The address probed and what it answered.
async fn probe(client: Result<Client, ClientError>) -> (String, Result<Health, ClientError>) {
    match client {
        Ok(c) => (c.target().to_string(), c.get("/v1/health").await),
        Err(e) => ("-".to_string(), Err(e)),
    }
}

/// How this node's encryption stands: what carries it and its key, or why it is down.
fn tunnel_cell(r: &TunnelReport) -> String {
    match (&r.backend, &r.error) {
        (_, Some(e)) => format!("error: {e}"),
        (Some(b), None) if r.up => {
            let why = r
                .fallback
                .as_ref()
                .map(|f| format!("; {f}"))
                .unwrap_or_default();
            let rotating = if r.rotating { ", rotating" } else { "" };
            format!("up: {b}{why}, key {}{rotating}, mtu {}", r.key, r.mtu)
        }
        _ => format!("off (no encrypted network), key {}", r.key),
    }
}

fn status_cell(result: &Result<Health, ClientError>, now: i64) -> String {
    match result {
        Ok(Health {
            status,
            version,
            certificate: Some(c),
        }) => format!(
            "{status} ({version}), certificate {}",
            crate::cert::summary(c, now)
        ),
        Ok(h) => format!("{} ({})", h.status, h.version),
        Err(ClientError::Unreachable { .. }) => "unreachable".to_string(),
        Err(ClientError::Timeout { .. }) => "timeout".to_string(),
        Err(ClientError::BadAddress { .. }) => "bad address".to_string(),
        Err(_) => "error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::api::{ApiError, ErrorKind, Target};

    use super::*;

    #[test]
    fn tunnel_cells() {
        let mut r = TunnelReport {
            key: "abcdEFGH".into(),
            tunnel: "100.64.0.9".into(),
            mtu: 1440,
            port: 51820,
            ..TunnelReport::default()
        };
        assert_eq!(tunnel_cell(&r), "off (no encrypted network), key abcdEFGH");
        r.up = true;
        r.backend = Some("userspace (boringtun-cli 0.7.1)".into());
        r.fallback = Some("the kernel has no WireGuard module".into());
        assert_eq!(
            tunnel_cell(&r),
            "up: userspace (boringtun-cli 0.7.1); the kernel has no WireGuard module, key abcdEFGH, mtu 1440"
        );
        r.error = Some("no WireGuard backend: cannot run boringtun-cli".into());
        assert!(tunnel_cell(&r).starts_with("error: no WireGuard backend"));
    }

    #[test]
    fn cells() {
        let ok = Ok(Health {
            status: "ok".into(),
            version: "0.1.0".into(),
            certificate: None,
        });
        assert_eq!(status_cell(&ok, 0), "ok (0.1.0)");
        let certified = Ok(Health {
            status: "ok".into(),
            version: "0.1.0".into(),
            certificate: Some(shibafu_overlay::tls::CertInfo {
                name: "coordinator1".into(),
                role: Some(shibafu_overlay::tls::Role::Coordinator),
                not_after: 86_400 * 400,
                expires: "1971-02-05T00:00:00Z".into(),
            }),
        });
        assert_eq!(
            status_cell(&certified, 0),
            "ok (0.1.0), certificate coordinator1 (coordinator), expires 1971-02-05T00:00:00Z (in 400 days)"
        );
        let down = Err(ClientError::Unreachable {
            peer: "agent".into(),
            target: Target::Unix("/x".into()),
            reason: "No such file or directory".into(),
            hint: "h".into(),
        });
        assert_eq!(status_cell(&down, 0), "unreachable");
        let api = Err(ClientError::Api(ApiError::new(
            ErrorKind::Unavailable,
            "etcd down",
        )));
        assert_eq!(status_cell(&api, 0), "error");
    }

    #[tokio::test]
    async fn unreachable_servers_fail_with_both_messages() {
        let dir = std::env::temp_dir().join(format!("shibafu-status-{}", std::process::id()));
        let ctx = Context::new(
            "http://127.0.0.1:1".into(),
            dir.join("missing.sock").display().to_string(),
        );
        let mut out = Vec::new();
        let err = run(&ctx, &mut out).await.expect_err("nothing answers");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("COMPONENT     ADDRESS"), "{text}");
        assert!(text.contains("coordinator   http://127.0.0.1:1"), "{text}");
        assert!(
            text.lines()
                .all(|l| l.starts_with("COMPONENT") || l.ends_with("unreachable")),
            "{text}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot reach coordinator at http://127.0.0.1:1: "),
            "{msg}"
        );
        assert!(
            msg.contains("\nerror: cannot reach agent at unix:"),
            "{msg}"
        );
    }
}
