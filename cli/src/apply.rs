//! `shibafu apply -f FILE [--dry-run] [--prune]` and `shibafu export`: the cluster as one YAML
//! file. The file is read here, every error placed at its line and column; the coordinator
//! checks the document against the cluster and applies it in one transaction, and its problems
//! are placed back in the file. A file with errors is still sent, as a dry run, so that one
//! report holds the file's errors and the cluster's.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use shibafu_overlay::api::{ApplyAnswer, ApplyRequest, ClientError, Problem};

use crate::config_read::{self, Read};
use crate::config_write;
use crate::context::Context;
use crate::yaml::{self, Position};

/// Flags of `shibafu apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The file: networks, links, services and policies in YAML (see docs/config.md).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print the changes; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove the networks, links, services and policies the file does not name.
    #[arg(long)]
    pub prune: bool,
}

/// `shibafu apply`: prints the changes (`+ network frontend`), or fails with every error.
pub async fn apply(args: ApplyArgs, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {file}"))?;
    let node = yaml::parse(&text).map_err(|e| refused(&[line(&file, e.at, &e.message).1]))?;
    let read = config_read::read(&node);
    let req = ApplyRequest {
        document: read.document.clone(),
        dry_run: args.dry_run || !read.errors.is_empty(),
        prune: args.prune,
    };
    let (problems, unchecked) = match ctx.coordinator()?.apply(&req).await {
        Ok(answer) if read.errors.is_empty() => {
            return write(out, &changes(&answer, args.dry_run));
        }
        Ok(_) => (Vec::new(), None),
        Err(ClientError::Api(e)) if !e.problems.is_empty() => (e.problems, None),
        Err(e) if read.errors.is_empty() => return Err(e.into()),
        Err(e) => (Vec::new(), Some(e)),
    };
    let mut lines = report(&file, &text, &read, &problems);
    if let Some(e) = unchecked {
        lines.push(format!("(not checked against the cluster: {e})"));
    }
    Err(refused(&lines))
}

/// `shibafu export`: the whole cluster as a file for `apply`.
pub async fn export(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let doc = ctx.coordinator()?.export().await?;
    let text = config_write::render(&doc).context("cannot write the cluster as YAML")?;
    write(out, &text)
}

/// What an apply did: one line per change, then a summary.
pub fn changes(answer: &ApplyAnswer, dry_run: bool) -> String {
    let mut text: String = answer.changes.iter().map(|c| format!("{c}\n")).collect();
    let n = answer.changes.len();
    let plural = if n == 1 { "" } else { "s" };
    text.push_str(&match (n, dry_run) {
        (0, _) => "no changes\n".to_string(),
        (_, true) => format!("dry run: {n} change{plural}, nothing applied\n"),
        (_, false) => format!("applied {n} change{plural}\n"),
    });
    text
}

/// `FILE:LINE:COLUMN: message` (`FILE: message` without a place).
fn line(file: &str, at: Option<Position>, message: &str) -> (Option<Position>, String) {
    let text = match at {
        Some(p) => format!("{file}:{p}: {message}"),
        None => format!("{file}: {message}"),
    };
    (at, text)
}

/// The file's errors and the coordinator's problems, in the order of the file. A problem at
/// the place of one of the file's errors is left out: it is that error seen again (a missing
/// key sent empty, say).
pub fn report(file: &str, text: &str, read: &Read, problems: &[Problem]) -> Vec<String> {
    let mut lines: Vec<(Option<Position>, String)> = read
        .errors
        .iter()
        .map(|e| line(file, yaml::locate(text, &e.at), &e.message))
        .collect();
    let local: Vec<Option<Position>> = lines.iter().map(|(p, _)| *p).collect();
    for p in problems {
        let at = read
            .origins
            .of(&p.path)
            .and_then(|loc| yaml::locate(text, loc));
        if at.is_none() || !local.contains(&at) {
            lines.push(line(file, at, &p.error));
        }
    }
    // Placed lines by place, then the rest.
    lines.sort_by_key(|(at, _)| (at.is_none(), *at));
    lines.into_iter().map(|(_, l)| l).collect()
}

fn refused(lines: &[impl AsRef<str>]) -> anyhow::Error {
    let n = lines.len();
    let body: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    anyhow::anyhow!("{}\n{n} error(s); nothing was applied", body.join("\n"))
}

fn write(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::api::{Change, ChangeAction, ObjectKind};

    use super::*;
    use crate::args::testing::command;
    use crate::args::Command;

    const FILE: &str = "\
networks:
  frontend:
    subnet: 172.21.0.0/33
    mtu: big
  backend: {subnet: 172.22.0.0/24}
services:
  - {name: web, port: 80}
";

    #[test]
    fn problems_of_the_file_and_the_cluster_come_in_file_order() {
        let read = config_read::read(&yaml::parse(FILE).expect("yaml"));
        let problems = [
            Problem::new("networks/0/subnet", "invalid subnet \"172.21.0.0/33\""),
            Problem::new("services/0/network", "no network named \"\""),
            Problem::new("services/0/port", "port clash"),
            Problem::new("", "network \"old\" has 1 endpoint(s) attached"),
        ];
        assert_eq!(
            report("f.yaml", FILE, &read, &problems),
            [
                "f.yaml:3:13: invalid subnet \"172.21.0.0/33\"",
                "f.yaml:4:10: expected a whole number",
                "f.yaml:7:5: service: missing network",
                "f.yaml:7:23: port clash",
                "f.yaml: network \"old\" has 1 endpoint(s) attached",
            ]
        );
        let one = line("f.yaml", Some(Position { line: 1, column: 2 }), "bad").1;
        let e = refused(&[one]);
        assert_eq!(
            e.to_string(),
            "f.yaml:1:2: bad\n1 error(s); nothing was applied"
        );
    }

    #[test]
    fn changes_and_summary() {
        let change = Change {
            action: ChangeAction::Create,
            kind: ObjectKind::Network,
            name: "frontend".into(),
            details: vec![],
        };
        let answer = ApplyAnswer {
            changes: vec![change],
            applied: true,
        };
        assert_eq!(
            changes(&answer, false),
            "+ network frontend\napplied 1 change\n"
        );
        assert_eq!(
            changes(&answer, true),
            "+ network frontend\ndry run: 1 change, nothing applied\n"
        );
        assert_eq!(changes(&ApplyAnswer::default(), false), "no changes\n");
    }

    #[test]
    fn command_lines() {
        let Command::Apply(a) =
            command(&["apply", "-f", "net.yaml", "--dry-run", "--prune"]).expect("apply")
        else {
            panic!("not apply");
        };
        assert_eq!(
            (a.file, a.dry_run, a.prune),
            ("net.yaml".into(), true, true)
        );
        assert!(command(&["apply"]).is_err(), "the file is required");
        assert!(matches!(command(&["export"]), Ok(Command::Export)));
    }
}
