//! YAML with positions, from serde_norway alone. A file is read into a plain tree ([`Node`])
//! that keeps every entry of a mapping in order, duplicate keys too (so they can be reported
//! with the rest). Line and column of a node are found on demand: the text is read again by a
//! visitor that walks to the node ([`Loc`]) and fails there, and serde_norway puts the position
//! of the node being read into that error. Errors are few, files small: one more pass per
//! error costs nothing, and no second YAML parser is needed.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A YAML value; mappings keep their entries in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping.
    Map(Vec<(Node, Node)>),
}

/// One step from a node to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The value of a mapping's entry, by index.
    Entry(usize),
    /// The item of a sequence, by index.
    Item(usize),
}

/// Where a node is: the steps from the root, and whether it is the key of the last entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loc {
    steps: Vec<Step>,
    key: bool,
}

impl Loc {
    /// The value of entry `i` of the mapping here.
    pub fn entry(&self, i: usize) -> Loc {
        let mut steps = self.steps.clone();
        steps.push(Step::Entry(i));
        Loc { steps, key: false }
    }

    /// The key of entry `i` of the mapping here.
    pub fn key(&self, i: usize) -> Loc {
        Loc {
            key: true,
            ..self.entry(i)
        }
    }

    /// Item `i` of the sequence here.
    pub fn item(&self, i: usize) -> Loc {
        let mut steps = self.steps.clone();
        steps.push(Step::Item(i));
        Loc { steps, key: false }
    }
}

/// A line and a column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column (in characters).
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A file that is not YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub at: Option<Position>,
    /// What it says.
    pub message: String,
}

/// Reads `text` (an empty file, or one of comments only, is `Null`).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if text.lines().all(blank) {
        return Ok(Node::Null);
    }
    serde_norway::from_str(text).map_err(|e| {
        let at = e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let mut message = e.to_string();
        if let Some(p) = at {
            message = message.replacen(&format!(" at line {} column {}", p.line, p.column), "", 1);
        }
        SyntaxError { at, message }
    })
}

/// The position of the node at `loc` in `text` (the closest enclosing node when there is none).
pub fn locate(text: &str, loc: &Loc) -> Option<Position> {
    let de = serde_norway::Deserializer::from_str(text);
    let e = Seek { loc, depth: 0 }.deserialize(de).err()?;
    e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    })
}

/// Walks to a node and fails there, so that the error carries the node's position.
struct Seek<'a> {
    loc: &'a Loc,
    depth: usize,
}

const HERE: &str = "here";

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HERE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Step::Entry(i)) = self.loc.steps.get(self.depth) else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*i {
            map.next_entry::<IgnoredAny, IgnoredAny>()?;
        }
        let last = self.depth + 1 == self.loc.steps.len();
        if last && self.loc.key {
            map.next_key_seed(Here)?;
        } else {
            map.next_key::<IgnoredAny>()?;
            let depth = self.depth + 1;
            map.next_value_seed(Seek {
                loc: self.loc,
                depth,
            })?;
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Step::Item(i)) = self.loc.steps.get(self.depth) else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*i {
            seq.next_element::<IgnoredAny>()?;
        }
        let depth = self.depth + 1;
        seq.next_element_seed(Seek {
            loc: self.loc,
            depth,
        })?;
        Err(de::Error::custom(HERE))
    }
}

/// Fails on whatever node it is given.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Seek {
            loc: &Loc::default(),
            depth: 0,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Node, A::Error> {
        Err(de::Error::custom("YAML tags (!tag) are not supported here"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
a:
  b: [1, \"two\", {c: d}]
  b: again
e:
  - f: 1
    g: ~
";

    fn at(loc: &Loc) -> String {
        locate(TEXT, loc).map_or("none".into(), |p| p.to_string())
    }

    #[test]
    fn keeps_duplicates_and_order() {
        let Node::Map(top) = parse(TEXT).expect("yaml") else {
            panic!("not a map");
        };
        let Node::Map(a) = &top[0].1 else {
            panic!("a is not a map");
        };
        assert_eq!(a.len(), 2);
        assert_eq!(a[1], (Node::Str("b".into()), Node::Str("again".into())));
        let Node::Seq(items) = &a[0].1 else {
            panic!("b is not a list");
        };
        assert_eq!(items[..2], [Node::Int(1), Node::Str("two".into())]);
        assert_eq!(parse("# nothing\n\n").expect("empty"), Node::Null);
    }

    #[test]
    fn finds_keys_values_and_items() {
        let root = Loc::default();
        assert_eq!(at(&root.key(0)), "1:1");
        assert_eq!(
            at(&root.entry(0)),
            "2:3",
            "a mapping starts at its first key"
        );
        assert_eq!(at(&root.entry(0).key(1)), "3:3", "the duplicate");
        assert_eq!(at(&root.entry(0).entry(0)), "2:6");
        assert_eq!(at(&root.entry(0).entry(0).item(1)), "2:10");
        assert_eq!(at(&root.entry(0).entry(0).item(2).entry(0)), "2:21");
        assert_eq!(at(&root.entry(1).item(0).key(1)), "6:5");
        assert_eq!(at(&root.entry(1).item(0).entry(1)), "6:8");
        assert_eq!(
            at(&root.entry(1).item(5)),
            "5:3",
            "missing: the enclosing node"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert_eq!(e.at, Some(Position { line: 2, column: 2 }));
        assert_eq!(
            e.message,
            "did not find expected ',' or ']', while parsing a flow sequence at line 1 column 4"
        );
        let e = parse("a: !tag 1\n").expect_err("tag");
        assert_eq!(e.at, Some(Position { line: 1, column: 4 }));
    }
}
