//! `shibafu logs [-f] NAME`: a container's output (stdout and stderr as its log file holds
//! them), read from the agent in chunks by offset. `run` without `-d` follows the same way.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::{ClientError, LogChunk};
use tokio::time::Instant;

use crate::context::Context;

/// Pause between two polls of a log that has no new output.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Pause between two attempts while the agent cannot be reached.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long a follower keeps trying while the agent cannot be reached (an agent restart).
pub const AGENT_OUTAGE: Duration = Duration::from_secs(30);

/// Flags of `shibafu logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Container name.
    pub name: String,
}

/// Prints the log of a container; with `--follow`, until it exits.
pub async fn run(args: LogsArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let agent = ctx.agent()?;
    let fetch = |offset| agent.logs(&args.name, offset);
    if args.follow {
        follow(fetch, out).await.map(|_| ())
    } else {
        print_available(fetch, out).await
    }
}

/// Writes the log from the start up to what exists now.
pub async fn print_available<F, Fut>(mut fetch: F, out: &mut dyn Write) -> anyhow::Result<()>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<LogChunk, ClientError>>,
{
    let mut offset = 0;
    loop {
        let chunk = fetch(offset).await?;
        write_chunk(out, &chunk)?;
        if chunk.next_offset <= offset || chunk.data.is_empty() {
            return Ok(());
        }
        offset = chunk.next_offset;
    }
}

/// Writes the log from the start as it grows, polling every [`POLL_INTERVAL`] while there is
/// nothing new, until the container has exited and everything is written; returns its exit
/// code. Rides out an agent that cannot be reached for up to [`AGENT_OUTAGE`].
pub async fn follow<F, Fut>(mut fetch: F, out: &mut dyn Write) -> anyhow::Result<i32>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<LogChunk, ClientError>>,
{
    let mut offset = 0;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let chunk = match fetch(offset).await {
            Ok(chunk) => chunk,
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= AGENT_OUTAGE {
                    return Err(anyhow::Error::new(e).context(format!(
                        "stopped following the log after {}s without an answer",
                        AGENT_OUTAGE.as_secs()
                    )));
                }
                tracing::debug!(error = %e, "agent unreachable while following; retrying");
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        unreachable_since = None;
        write_chunk(out, &chunk)?;
        let progressed = chunk.next_offset > offset;
        offset = offset.max(chunk.next_offset);
        if !progressed {
            if let Some(code) = chunk.exit_code {
                return Ok(code);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

fn write_chunk(out: &mut dyn Write, chunk: &LogChunk) -> anyhow::Result<()> {
    if chunk.data.is_empty() {
        return Ok(());
    }
    out.write_all(chunk.data.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use shibafu_overlay::api::{ApiError, Target};

    use super::*;

    fn chunk(data: &str, next: u64, exit: Option<i32>) -> Result<LogChunk, ClientError> {
        Ok(LogChunk {
            data: data.into(),
            next_offset: next,
            exit_code: exit,
        })
    }

    fn unreachable() -> Result<LogChunk, ClientError> {
        Err(ClientError::Unreachable {
            peer: "agent".into(),
            target: Target::Unix("/x.sock".into()),
            reason: "Connection refused".into(),
            hint: "h".into(),
        })
    }

    /// A scripted agent: answers in order, records the offsets asked for.
    #[derive(Clone)]
    struct Script {
        answers: Arc<Mutex<VecDeque<Result<LogChunk, ClientError>>>>,
        asked: Arc<Mutex<Vec<u64>>>,
    }

    impl Script {
        fn new(answers: Vec<Result<LogChunk, ClientError>>) -> Script {
            Script {
                answers: Arc::new(Mutex::new(answers.into())),
                asked: Arc::new(Mutex::new(Vec::new())),
            }
        }

        fn fetch(&self) -> impl FnMut(u64) -> std::future::Ready<Result<LogChunk, ClientError>> {
            let me = self.clone();
            move |offset| {
                me.asked.lock().expect("lock").push(offset);
                let next = me.answers.lock().expect("lock").pop_front();
                std::future::ready(next.expect("asked more often than scripted"))
            }
        }

        fn asked(&self) -> Vec<u64> {
            self.asked.lock().expect("lock").clone()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follow_streams_until_exit_and_drained() {
        let script = Script::new(vec![
            chunk("hello\n", 6, None),
            chunk("", 6, None),
            chunk("wor", 9, None),
            chunk("ld\n", 12, Some(3)),
            chunk("", 12, Some(3)),
        ]);
        let mut out = Vec::new();
        let code = follow(script.fetch(), &mut out).await.expect("follow");
        assert_eq!(code, 3);
        assert_eq!(String::from_utf8(out).expect("utf8"), "hello\nworld\n");
        assert_eq!(script.asked(), [0, 6, 6, 9, 12]);
    }

    #[tokio::test(start_paused = true)]
    async fn follow_polls_at_the_interval_while_idle() {
        let script = Script::new(vec![
            chunk("", 0, None),
            chunk("", 0, None),
            chunk("", 0, None),
            chunk("", 0, Some(0)),
        ]);
        let start = Instant::now();
        let code = follow(script.fetch(), &mut Vec::new()).await.expect("follow");
        assert_eq!(code, 0);
        assert_eq!(start.elapsed(), POLL_INTERVAL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn follow_rides_out_a_short_agent_outage() {
        let script = Script::new(vec![
            chunk("a", 1, None),
            unreachable(),
            unreachable(),
            chunk("b", 2, Some(1)),
            chunk("", 2, Some(1)),
        ]);
        let mut out = Vec::new();
        assert_eq!(follow(script.fetch(), &mut out).await.expect("follow"), 1);
        assert_eq!(out, b"ab");
        assert_eq!(script.asked(), [0, 1, 1, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn follow_gives_up_after_a_long_outage() {
        let tries = (AGENT_OUTAGE.as_millis() / RETRY_INTERVAL.as_millis()) as usize + 2;
        let script = Script::new((0..tries).map(|_| unreachable()).collect());
        let e = follow(script.fetch(), &mut Vec::new())
            .await
            .expect_err("gave up");
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("stopped following the log after 30s without an answer: cannot reach agent"),
            "{msg}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn follow_stops_on_api_errors() {
        let script = Script::new(vec![
            chunk("x", 1, None),
            Err(ClientError::Api(ApiError::not_found("no container named \"t\""))),
        ]);
        let e = follow(script.fetch(), &mut Vec::new())
            .await
            .expect_err("removed");
        assert_eq!(e.to_string(), "no container named \"t\"");
    }

    #[tokio::test]
    async fn print_available_reads_every_chunk_then_stops() {
        let script = Script::new(vec![
            chunk("one\n", 4, None),
            chunk("two\n", 8, None),
            chunk("", 8, None),
        ]);
        let mut out = Vec::new();
        print_available(script.fetch(), &mut out).await.expect("logs");
        assert_eq!(out, b"one\ntwo\n");
        assert_eq!(script.asked(), [0, 4, 8]);
        let empty = Script::new(vec![chunk("", 0, Some(0))]);
        let mut out = Vec::new();
        print_available(empty.fetch(), &mut out).await.expect("empty");
        assert!(out.is_empty());
    }
}
