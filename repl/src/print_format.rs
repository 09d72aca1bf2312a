//! Result output: an aligned table for people, CSV / JSON / NDJSON for tools, Parquet and
//! Arrow IPC for data. Every format writes batch by batch, so large results stream (the table
//! keeps only the rows it shows).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
    Arrow,
}

impl Format {
    pub const NAMES: &'static str = "table, csv, json, ndjson, parquet, arrow";

    fn is_binary(self) -> bool {
        matches!(self, Format::Parquet | Format::Arrow)
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(text.trim(), true)
            .map_err(|_| format!("unknown format `{text}`; use one of {}", Self::NAMES))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = clap::ValueEnum::to_possible_value(self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// Where results go: standard output, or a file chosen with `-o` / `\o`.
pub enum Sink {
    Stdout(io::Stdout),
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
}

impl Sink {
    pub fn stdout() -> Self {
        Sink::Stdout(io::stdout())
    }

    pub fn create(path: &Path) -> Result<Self, String> {
        let file = File::create(path)
            .map_err(|err| format!("cannot write to {}: {err}", path.display()))?;
        Ok(Sink::File {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Sink::Stdout(out) if out.is_terminal())
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Stdout(_) => "standard output".into(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// What the table footer reports.
pub struct Summary {
    pub elapsed: Option<Duration>,
}

/// Writes one statement's result.
pub trait ResultWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), String>;
    fn finish(self: Box<Self>, summary: &Summary) -> Result<(), String>;
}

/// A writer for `format` on `sink`; binary formats refuse a terminal.
pub fn writer<'a>(
    format: Format,
    sink: &'a mut Sink,
    schema: SchemaRef,
    max_rows: Option<usize>,
) -> Result<Box<dyn ResultWriter + 'a>, String> {
    if format.is_binary() && sink.is_terminal() {
        return Err(format!(
            "{format} output is binary and stdout is a terminal: write it to a file with \
             `-o FILE` (or `\\o FILE` at the prompt)"
        ));
    }
    let failed = |err: &dyn fmt::Display| format!("cannot write {format} output: {err}");
    Ok(match format {
        Format::Table => Box::new(TableWriter::new(sink, schema, max_rows)),
        Format::Csv => Box::new(Streaming {
            writer: arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(sink),
            finish: |_| Ok(()),
        }),
        Format::Json => Box::new(Streaming {
            writer: arrow::json::ArrayWriter::new(sink),
            finish: |mut w: arrow::json::ArrayWriter<&mut Sink>| {
                w.finish()?;
                let inner = w.into_inner();
                inner.write_all(b"\n")?;
                Ok(())
            },
        }),
        Format::Ndjson => Box::new(Streaming {
            writer: arrow::json::LineDelimitedWriter::new(sink),
            finish: |mut w: arrow::json::LineDelimitedWriter<&mut Sink>| w.finish(),
        }),
        Format::Parquet => Box::new(Streaming {
            writer: parquet::arrow::ArrowWriter::try_new(sink, schema, None)
                .map_err(|e| failed(&e))?,
            finish: |w: parquet::arrow::ArrowWriter<&mut Sink>| {
                w.close()
                    .map(|_| ())
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))
            },
        }),
        // The stream format to standard output (readable from a pipe), the file format
        // (Feather v2, random access) to a file.
        Format::Arrow => match sink {
            Sink::Stdout(_) => Box::new(Streaming {
                writer: arrow::ipc::writer::StreamWriter::try_new(sink, &schema)
                    .map_err(|e| failed(&e))?,
                finish: |mut w: arrow::ipc::writer::StreamWriter<&mut Sink>| w.finish(),
            }),
            Sink::File { .. } => Box::new(Streaming {
                writer: arrow::ipc::writer::FileWriter::try_new(sink, &schema)
                    .map_err(|e| failed(&e))?,
                finish: |mut w: arrow::ipc::writer::FileWriter<&mut Sink>| w.finish(),
            }),
        },
    })
}

/// Arrow's own writers all have `write(&batch)`; this trait names that.
trait BatchWrite {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError>;
}

macro_rules! batch_write {
    ($($ty:ty),*) => {$(
        impl BatchWrite for $ty {
            fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
                self.write(batch)
            }
        }
    )*};
}

batch_write!(
    arrow::csv::Writer<&mut Sink>,
    arrow::json::ArrayWriter<&mut Sink>,
    arrow::json::LineDelimitedWriter<&mut Sink>,
    arrow::ipc::writer::StreamWriter<&mut Sink>,
    arrow::ipc::writer::FileWriter<&mut Sink>
);

impl BatchWrite for parquet::arrow::ArrowWriter<&mut Sink> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
        self.write(batch)
            .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))
    }
}

struct Streaming<W> {
    writer: W,
    finish: fn(W) -> Result<(), arrow::error::ArrowError>,
}

impl<W: BatchWrite> ResultWriter for Streaming<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.writer
            .write_batch(batch)
            .map_err(|err| format!("cannot write the result: {err}"))
    }

    fn finish(self: Box<Self>, _summary: &Summary) -> Result<(), String> {
        (self.finish)(self.writer).map_err(|err| format!("cannot finish the result: {err}"))
    }
}

/// The human format: column names and types over aligned rows, at most `max_rows` of them,
/// then how many rows there were.
struct TableWriter<'a> {
    sink: &'a mut Sink,
    schema: SchemaRef,
    max_rows: Option<usize>,
    rows: Vec<Vec<String>>,
    total_rows: usize,
}

impl<'a> TableWriter<'a> {
    fn new(sink: &'a mut Sink, schema: SchemaRef, max_rows: Option<usize>) -> Self {
        Self {
            sink,
            schema,
            max_rows,
            rows: Vec::new(),
            total_rows: 0,
        }
    }

    fn render(&self, summary: &Summary) -> String {
        let mut out = String::new();
        if self.schema.fields().is_empty() {
            out.push_str("OK");
        } else {
            let headers: Vec<[String; 2]> = self
                .schema
                .fields()
                .iter()
                .map(|f| [f.name().clone(), f.data_type().to_string()])
                .collect();
            let right_aligned: Vec<bool> = self
                .schema
                .fields()
                .iter()
                .map(|f| is_numeric(f.data_type()))
                .collect();
            let mut widths: Vec<usize> = headers
                .iter()
                .map(|[name, ty]| width(name).max(width(ty)))
                .collect();
            for row in &self.rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.lines().map(width).max().unwrap_or(0));
                }
            }
            for line in 0..2 {
                let cells: Vec<&str> = headers.iter().map(|h| h[line].as_str()).collect();
                push_line(&mut out, &cells, &widths, &vec![false; widths.len()]);
            }
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            out.push_str(&rule.join("+"));
            out.push('\n');
            for row in &self.rows {
                let lines: Vec<Vec<&str>> = row.iter().map(|c| c.split('\n').collect()).collect();
                let height = lines.iter().map(Vec::len).max().unwrap_or(1);
                for n in 0..height {
                    let cells: Vec<&str> = lines
                        .iter()
                        .map(|l| l.get(n).copied().unwrap_or(""))
                        .collect();
                    push_line(&mut out, &cells, &widths, &right_aligned);
                }
            }
            let hidden = self.total_rows - self.rows.len();
            if hidden > 0 {
                out.push_str(&format!(
                    "... {hidden} more row{}\n",
                    if hidden == 1 { "" } else { "s" }
                ));
            }
            out.push_str(&format!(
                "({} row{}",
                self.total_rows,
                if self.total_rows == 1 { "" } else { "s" }
            ));
            if let Some(elapsed) = summary.elapsed {
                out.push_str(&format!(", {:.3} s", elapsed.as_secs_f64()));
            }
            out.push(')');
        }
        if self.schema.fields().is_empty()
            && let Some(elapsed) = summary.elapsed
        {
            out.push_str(&format!(" ({:.3} s)", elapsed.as_secs_f64()));
        }
        out.push('\n');
        out
    }
}

impl ResultWriter for TableWriter<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let room = self
            .max_rows
            .map_or(usize::MAX, |max| max.saturating_sub(self.rows.len()));
        let shown = batch.num_rows().min(room);
        self.total_rows += batch.num_rows();
        if shown == 0 {
            return Ok(());
        }
        let options = FormatOptions::default().with_null("NULL");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("cannot display the result: {err}"))?;
        for row in 0..shown {
            self.rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string().replace('\t', "    "))
                    .collect(),
            );
        }
        Ok(())
    }

    fn finish(self: Box<Self>, summary: &Summary) -> Result<(), String> {
        let text = self.render(summary);
        self.sink
            .write_all(text.as_bytes())
            .and_then(|_| self.sink.flush())
            .map_err(|err| format!("cannot write the result: {err}"))
    }
}

fn push_line(out: &mut String, cells: &[&str], widths: &[usize], right_aligned: &[bool]) {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(right_aligned)
        .map(|((cell, &w), &right)| {
            let pad = " ".repeat(w - width(cell));
            if right {
                format!(" {pad}{cell} ")
            } else {
                format!(" {cell}{pad} ")
            }
        })
        .collect();
    out.push_str(padded.join("|").trim_end());
    out.push('\n');
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("two\nlines")])),
                Arc::new(Int64Array::from(vec![1, 20, 300])),
            ],
        )
        .unwrap()
    }

    fn table(max_rows: Option<usize>) -> String {
        let batch = batch();
        let mut sink = Sink::stdout();
        let mut writer = TableWriter::new(&mut sink, batch.schema(), max_rows);
        writer.write(&batch).unwrap();
        writer.render(&Summary { elapsed: None })
    }

    #[test]
    fn table_shows_names_types_aligned_rows_and_a_count() {
        assert_eq!(
            table(None),
            " name  | n\n Utf8  | Int64\n-------+-------\n a     |     1\n NULL  |    20\n two   |   300\n lines |\n(3 rows)\n"
        );
    }

    #[test]
    fn table_says_how_many_rows_it_left_out() {
        let text = table(Some(1));
        assert!(
            text.contains(" a    |     1\n... 2 more rows\n(3 rows)"),
            "{text}"
        );
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert_eq!(Format::Ndjson.to_string(), "ndjson");
        assert!("xml".parse::<Format>().unwrap_err().contains("table, csv"));
    }
}
