//! shibafu-cni: a CNI plugin (spec 1.0.0 and 1.1.0) that puts a runtime's containers on shibafu
//! networks. It asks the node's agent over its API socket, so IPAM, DNS names, services and the
//! firewall stay the agent's. The result (or a CNI error) goes to stdout; logs, when
//! `SHIBAFU_LOG` asks for them, go to stderr; spans are exported when OTLP is configured, the
//! call continuing the runtime's `TRACEPARENT`.

mod config;
mod env;
mod error;
mod result;
mod run;

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::Value;
use shibafu_overlay::telemetry::{Telemetry, Trace};
use tracing::{info_span, Instrument};

use crate::env::CniEnv;
use crate::error::{CniError, INTERNAL, IO_FAILURE};

/// The most configuration read from stdin.
const MAX_STDIN: u64 = 1 << 20;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let e = CniError::new(INTERNAL, "shibafu-cni failed unexpectedly (a bug)")
            .details(info.to_string());
        print(&e.to_json(config::SUPPORTED[1]));
        std::process::exit(1);
    }));
    let telemetry = Telemetry::new("shibafu-cni").quiet_by_default().init();
    let stdin = read_config(std::io::stdin());
    let version = config::version_of(stdin.as_deref().unwrap_or_default());
    let outcome = stdin.and_then(|s| call(&s));
    drop(telemetry);
    match outcome {
        Ok(Some(v)) => {
            print(&v);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            print(&e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

/// The configuration from `input`: at most [`MAX_STDIN`] bytes, else code 5 (as for a read
/// that fails).
fn read_config(input: impl Read) -> Result<Vec<u8>, CniError> {
    let mut stdin = Vec::new();
    match input.take(MAX_STDIN + 1).read_to_end(&mut stdin) {
        Err(e) => Err(CniError::new(IO_FAILURE, format!("reading stdin: {e}"))),
        Ok(n) if n as u64 > MAX_STDIN => Err(CniError::new(
            IO_FAILURE,
            format!("the configuration on stdin is over {MAX_STDIN} bytes"),
        )),
        Ok(_) => Ok(stdin),
    }
}

/// Reads the environment and runs the operation in a span continuing the runtime's trace.
fn call(stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let env = CniEnv::read(|k| std::env::var(k).ok())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(IO_FAILURE, format!("starting the runtime: {e}")))?;
    let span = info_span!(
        "cni",
        otel.name = format!("cni {:?}", env.command).to_lowercase(),
        otel.kind = "client",
        container = env.container_id.as_deref().unwrap_or(""),
        ifname = env.ifname.as_deref().unwrap_or(""),
    );
    Trace::from_header(env.traceparent.as_deref()).adopt(&span);
    rt.block_on(run::dispatch(&env, stdin).instrument(span))
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that fails, as a closed or broken stdin does.
    struct Broken;

    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("stdin is broken"))
        }
    }

    #[test]
    fn stdin_over_one_mib_or_unreadable_is_code_5() {
        let limit = MAX_STDIN as usize;
        let exactly = read_config(&vec![b' '; limit][..]).expect("1 MiB is fine");
        assert_eq!(exactly.len(), limit);
        let e = read_config(&vec![b' '; limit + 1][..]).expect_err("over 1 MiB");
        assert_eq!(e.code, IO_FAILURE);
        assert!(e.msg.contains("over 1048576 bytes"), "{}", e.msg);
        let e = read_config(Broken).expect_err("broken");
        assert_eq!(e.code, IO_FAILURE);
        assert!(e.msg.contains("stdin is broken"), "{}", e.msg);
    }
}
