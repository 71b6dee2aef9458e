//! The sync log's format: one event a line, fields separated by tabs, files named by
//! inode number so that a rename does not lose a file's fsync history.
//!
//! ```text
//! open    INODE LENGTH PATH  a file that existed before, first opened: its length then
//! create  INODE PATH         a file created empty
//! sync    INODE LENGTH       an fsync that covered LENGTH bytes
//! shrink  INODE LENGTH       set_len(LENGTH): nothing past it is durable until the next sync
//! name    BEFORE AFTER PATH  PATH's entry changed from naming inode BEFORE to AFTER (`-`: none)
//! list    DIR INODE:NAME...  a directory fsync, with the entries it made durable
//! ```
//!
//! A line is complete only with its newline: a line a kill cut short is ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Opened {
        inode: u64,
        length: u64,
        path: PathBuf,
    },
    Created {
        inode: u64,
        path: PathBuf,
    },
    Synced {
        inode: u64,
        length: u64,
    },
    Shrunk {
        inode: u64,
        length: u64,
    },
    Changed {
        path: PathBuf,
        before: Option<u64>,
        after: Option<u64>,
    },
    Listed {
        dir: PathBuf,
        entries: BTreeMap<String, u64>,
    },
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `path` as UTF-8 text with no tab or newline, the only paths the log can hold.
fn text_of(path: &Path) -> io::Result<&str> {
    path.to_str()
        .filter(|text| !text.contains(['\t', '\n']))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the sync log cannot hold the path {}", path.display()),
            )
        })
}

impl Event {
    /// Appends the event's line to `out`.
    ///
    /// # Errors
    /// `InvalidInput` for a path that is not UTF-8 or holds a tab or newline.
    pub(crate) fn encode(&self, out: &mut String) -> io::Result<()> {
        match self {
            Self::Opened {
                inode,
                length,
                path,
            } => write!(out, "open\t{inode}\t{length}\t{}", text_of(path)?),
            Self::Created { inode, path } => write!(out, "create\t{inode}\t{}", text_of(path)?),
            Self::Synced { inode, length } => write!(out, "sync\t{inode}\t{length}"),
            Self::Shrunk { inode, length } => write!(out, "shrink\t{inode}\t{length}"),
            Self::Changed {
                path,
                before,
                after,
            } => {
                let [before, after] = [before, after]
                    .map(|inode| inode.map_or("-".to_owned(), |inode| inode.to_string()));
                write!(out, "name\t{before}\t{after}\t{}", text_of(path)?)
            }
            Self::Listed { dir, entries } => {
                write!(out, "list\t{}", text_of(dir)?).expect("writing to a String");
                for (name, inode) in entries {
                    write!(out, "\t{inode}:{}", text_of(Path::new(name))?)
                        .expect("writing to a String");
                }
                Ok(())
            }
        }
        .expect("writing to a String");
        out.push('\n');
        Ok(())
    }

    fn decode(line: &str) -> Option<Self> {
        let mut fields = line.split('\t');
        let kind = fields.next()?;
        let mut number = || fields.next()?.parse::<u64>().ok();
        let event = match kind {
            "open" => Self::Opened {
                inode: number()?,
                length: number()?,
                path: PathBuf::from(fields.next()?),
            },
            "create" => Self::Created {
                inode: number()?,
                path: PathBuf::from(fields.next()?),
            },
            "sync" => Self::Synced {
                inode: number()?,
                length: number()?,
            },
            "shrink" => Self::Shrunk {
                inode: number()?,
                length: number()?,
            },
            "name" => {
                let mut inode = || match fields.next()? {
                    "-" => Some(None),
                    inode => inode.parse().ok().map(Some),
                };
                let (before, after) = (inode()?, inode()?);
                Self::Changed {
                    path: PathBuf::from(fields.next()?),
                    before,
                    after,
                }
            }
            "list" => {
                let dir = PathBuf::from(fields.next()?);
                let mut entries = BTreeMap::new();
                for entry in fields.by_ref() {
                    let (inode, name) = entry.split_once(':')?;
                    entries.insert(name.to_owned(), inode.parse().ok()?);
                }
                Self::Listed { dir, entries }
            }
            _ => return None,
        };
        fields.next().is_none().then_some(event)
    }
}

/// Every complete event of a sync log's text, in order.
///
/// # Errors
/// `InvalidData` naming the first complete line that is not an event.
pub(crate) fn parse(text: &str) -> io::Result<Vec<Event>> {
    // The part after the last newline is a line a kill cut short.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .split('\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(index, line)| {
            Event::decode(line)
                .ok_or_else(|| invalid(format!("sync log line {}: {line:?}", index + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(events: &[Event]) -> String {
        let mut text = String::new();
        for event in events {
            event.encode(&mut text).unwrap();
        }
        text
    }

    #[test]
    fn every_event_round_trips() {
        let events = vec![
            Event::Opened {
                inode: 1,
                length: 10,
                path: PathBuf::from("/d/t-0/0.log"),
            },
            Event::Created {
                inode: 2,
                path: PathBuf::from("/d/t-0/1.log"),
            },
            Event::Synced {
                inode: 2,
                length: 7,
            },
            Event::Shrunk {
                inode: 1,
                length: 3,
            },
            Event::Changed {
                path: PathBuf::from("/d/t-0/a.log"),
                before: None,
                after: Some(2),
            },
            Event::Changed {
                path: PathBuf::from("/d/t-0/b"),
                before: Some(9),
                after: None,
            },
            Event::Listed {
                dir: PathBuf::from("/d/t-0"),
                entries: BTreeMap::from([("a:b".to_owned(), 4), ("c".to_owned(), 5)]),
            },
            Event::Listed {
                dir: PathBuf::from("/d/empty"),
                entries: BTreeMap::new(),
            },
        ];
        assert_eq!(parse(&encoded(&events)).unwrap(), events);
    }

    #[test]
    fn a_line_cut_short_is_ignored_and_a_bad_line_named() {
        let created = Event::Created {
            inode: 2,
            path: PathBuf::from("/d/f"),
        };
        let mut text = encoded(std::slice::from_ref(&created));
        text.push_str("sync\t2\t1");
        assert_eq!(parse(&text).unwrap(), [created]);
        let error = parse("create\t1\t/d/f\nsync\tx\t1\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(parse("sync\t1\t2\t3\n").is_err(), "a field too many");
    }

    #[test]
    fn a_path_with_a_tab_is_refused() {
        let event = Event::Changed {
            path: PathBuf::from("/d/a\tb"),
            before: None,
            after: None,
        };
        let error = event.encode(&mut String::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
