//! `shibafu network connect-networks|isolate|links`: which networks may route to each other.
//! Links are cluster-wide, so they go through the coordinator; every agent applies them.

use std::io::Write;

use anyhow::Context as _;
use shibafu_overlay::model::Link;

use crate::args::Format;
use crate::context::Context;
use crate::output;

/// `connect-networks A B`: lets the two networks route to each other (linking twice is fine).
pub async fn connect(a: &str, b: &str, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let link = ctx.coordinator()?.link_networks(a, b).await?;
    write(out, &format!("{}\n", pair(&link)))
}

/// `isolate A B`: removes the link between the two networks.
pub async fn isolate(a: &str, b: &str, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let link = ctx.coordinator()?.unlink_networks(a, b).await?;
    write(out, &format!("{}\n", pair(&link)))
}

/// `links`: every link, as a table or JSON.
pub async fn list(format: Format, ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let links = ctx.coordinator()?.list_links().await?;
    let text = match format {
        Format::Table => output::links_table(&links),
        Format::Json => output::json(&links)?,
    };
    write(out, &text)
}

/// The networks linked to `network`, sorted.
pub fn peers(links: &[Link], network: &str) -> Vec<String> {
    let mut names: Vec<String> = links
        .iter()
        .filter_map(|l| {
            if l.a == network {
                Some(l.b.clone())
            } else if l.b == network {
                Some(l.a.clone())
            } else {
                None
            }
        })
        .collect();
    names.sort();
    names
}

/// A link as `a <-> b`.
fn pair(link: &Link) -> String {
    format!("{} <-> {}", link.a, link.b)
}

fn write(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::network as parse;
    use crate::args::{ListArgs, NetworkCmd};

    #[test]
    fn parsing() {
        let cmd = parse(&["connect-networks", "frontend", "backend"]).expect("connect");
        assert!(
            matches!(cmd, NetworkCmd::ConnectNetworks { ref a, ref b } if a == "frontend" && b == "backend")
        );
        let cmd = parse(&["isolate", "frontend", "backend"]).expect("isolate");
        assert!(
            matches!(cmd, NetworkCmd::Isolate { ref a, ref b } if a == "frontend" && b == "backend")
        );
        assert!(parse(&["connect-networks", "frontend"]).is_err());
        assert!(parse(&["isolate", "a", "b", "c"]).is_err());
        assert!(matches!(
            parse(&["links"]).expect("links"),
            NetworkCmd::Links(ListArgs {
                format: Format::Table
            })
        ));
        assert!(matches!(
            parse(&["links", "--format", "json"]).expect("links json"),
            NetworkCmd::Links(ListArgs {
                format: Format::Json
            })
        ));
    }

    #[test]
    fn peers_of_a_network() {
        let links = [
            Link::new("backend", "frontend"),
            Link::new("database", "backend"),
            Link::new("database", "frontend"),
        ];
        assert_eq!(peers(&links, "backend"), ["database", "frontend"]);
        assert_eq!(peers(&links, "frontend"), ["backend", "database"]);
        assert!(peers(&links, "other").is_empty());
        assert_eq!(pair(&links[1]), "backend <-> database");
    }
}
