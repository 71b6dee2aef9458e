//! Rendering results: aligned tables for people, JSON for scripts.

use std::io::Write;

use crate::error::CliError;

/// A table with a header row; columns are padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|title| (*title).to_owned()).collect()],
        }
    }

    /// Adds a row.
    ///
    /// # Panics
    /// If the row's cell count differs from the header's (a bug in the caller).
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.rows[0].len(), "row width");
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, with a trailing newline.
    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = widths[column] - cell.chars().count() + 2;
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes `text` to stdout.
///
/// # Errors
/// [`CliError::StdoutClosed`] or [`CliError::Stdout`].
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::from_stdout)
}

/// Writes `value` as one line of JSON to stdout.
///
/// # Errors
/// As for [`print`].
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut text = serde_json::to_string(value).expect("CLI values serialize");
    text.push('\n');
    print(&text)
}

/// Node ids as `1,2,3`, or `-` for none.
pub fn node_list(nodes: &[u32]) -> String {
    if nodes.is_empty() {
        return "-".into();
    }
    nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new(&["NAME", "PARTITIONS"]);
        table.row(vec!["orders-by-customer".into(), "3".into()]);
        table.row(vec!["x".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME                PARTITIONS\n\
             orders-by-customer  3\n\
             x                   12\n"
        );
    }

    #[test]
    fn empty_node_lists_show_a_dash() {
        assert_eq!(node_list(&[]), "-");
        assert_eq!(node_list(&[1, 2]), "1,2");
    }
}
