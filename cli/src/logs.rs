//! `shibafu logs [-f] NAME`: a container's output (stdout and stderr as its log file holds
//! them), read from the agent in chunks by offset. `run` without `-d` follows the same way.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::{ClientError, LogChunk};
use std::time::Instant;

use crate::context::Context;

/// How often a follower asks for more, and how long it waits for an agent that went away.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Pause between two polls of a log that has no new output.
    pub poll: Duration,
    /// Pause between two attempts while the agent cannot be reached.
    pub retry: Duration,
    /// How long to keep trying while the agent cannot be reached (an agent restart).
    pub outage: Duration,
}

/// The pacing of `logs -f` and `run`: 50 ms polls, 30 s of patience for an agent restart.
pub const PACING: Pacing = Pacing {
    poll: Duration::from_millis(50),
    retry: Duration::from_millis(500),
    outage: Duration::from_secs(30),
};

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
        follow(fetch, out, PACING).await.map(|_| ())
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

/// Writes the log from the start as it grows, polling every `pacing.poll` while there is
/// nothing new, until the container has exited and everything is written; returns its exit
/// code. Rides out an agent that cannot be reached for up to `pacing.outage`.
pub async fn follow<F, Fut>(
    mut fetch: F,
    out: &mut dyn Write,
    pacing: Pacing,
) -> anyhow::Result<i32>
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
                if since.elapsed() >= pacing.outage {
                    return Err(anyhow::Error::new(e).context(format!(
                        "stopped following the log after {:?} without an answer",
                        pacing.outage
                    )));
                }
                tracing::debug!(error = %e, "agent unreachable while following; retrying");
                tokio::time::sleep(pacing.retry).await;
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
            tokio::time::sleep(pacing.poll).await;
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

    /// Millisecond pacing, one second of patience: quick tests, same logic.
    const FAST: Pacing = Pacing {
        poll: Duration::from_millis(1),
        retry: Duration::from_millis(1),
        outage: Duration::from_secs(1),
    };

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

    #[tokio::test]
    async fn follow_streams_until_exit_and_drained() {
        let script = Script::new(vec![
            chunk("hello\n", 6, None),
            chunk("", 6, None),
            chunk("wor", 9, None),
            chunk("ld\n", 12, Some(3)),
            chunk("", 12, Some(3)),
        ]);
        let mut out = Vec::new();
        let code = follow(script.fetch(), &mut out, FAST)
            .await
            .expect("follow");
        assert_eq!(code, 3);
        assert_eq!(String::from_utf8(out).expect("utf8"), "hello\nworld\n");
        assert_eq!(script.asked(), [0, 6, 6, 9, 12]);
    }

    #[tokio::test]
    async fn follow_keeps_polling_while_idle() {
        let script = Script::new(vec![
            chunk("", 0, None),
            chunk("", 0, None),
            chunk("", 0, None),
            chunk("", 0, Some(0)),
        ]);
        let code = follow(script.fetch(), &mut Vec::new(), FAST)
            .await
            .expect("follow");
        assert_eq!(code, 0);
        assert_eq!(script.asked(), [0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn follow_rides_out_a_short_agent_outage() {
        let script = Script::new(vec![
            chunk("a", 1, None),
            unreachable(),
            unreachable(),
            chunk("b", 2, Some(1)),
            chunk("", 2, Some(1)),
        ]);
        let mut out = Vec::new();
        assert_eq!(
            follow(script.fetch(), &mut out, FAST)
                .await
                .expect("follow"),
            1
        );
        assert_eq!(out, b"ab");
        assert_eq!(script.asked(), [0, 1, 1, 1, 2]);
    }

    #[tokio::test]
    async fn follow_gives_up_after_a_long_outage() {
        let patience = Pacing {
            poll: Duration::from_millis(1),
            retry: Duration::from_millis(20),
            outage: Duration::from_millis(50),
        };
        // Far more failures than fit in the outage: the follower must stop on its own.
        let script = Script::new((0..1000).map(|_| unreachable()).collect());
        let e = follow(script.fetch(), &mut Vec::new(), patience)
            .await
            .expect_err("gave up");
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with(
                "stopped following the log after 50ms without an answer: cannot reach agent"
            ),
            "{msg}"
        );
        assert!(script.asked().len() < 1000);
    }

    #[tokio::test]
    async fn follow_stops_on_api_errors() {
        let script = Script::new(vec![
            chunk("x", 1, None),
            Err(ClientError::Api(ApiError::not_found(
                "no container named \"t\"",
            ))),
        ]);
        let e = follow(script.fetch(), &mut Vec::new(), FAST)
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
        print_available(script.fetch(), &mut out)
            .await
            .expect("logs");
        assert_eq!(out, b"one\ntwo\n");
        assert_eq!(script.asked(), [0, 4, 8]);
        let empty = Script::new(vec![chunk("", 0, Some(0))]);
        let mut out = Vec::new();
        print_available(empty.fetch(), &mut out)
            .await
            .expect("empty");
        assert!(out.is_empty());
    }
}
