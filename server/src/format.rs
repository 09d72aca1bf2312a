//! Result encodings of the HTTP API, chosen by `Accept`, each written batch by batch so a
//! response streams as the query runs: Arrow IPC stream, NDJSON, CSV, and a JSON array.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use bytes::Bytes;

/// A result encoding of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Arrow IPC stream format: the schema, then one message per batch.
    ArrowStream,
    /// Newline-delimited JSON: one object per row.
    NdJson,
    /// CSV with a header row.
    Csv,
    /// One JSON array of row objects; the default.
    Json,
}

impl Format {
    /// The media type of the Arrow IPC stream format.
    pub const ARROW_STREAM: &'static str = "application/vnd.apache.arrow.stream";

    /// The first acceptable encoding of an `Accept` header (order of listing; `q` values
    /// are not weighed); JSON when there is none or anything goes. None: nothing offered fits.
    pub fn negotiate(accept: Option<&str>) -> Option<Self> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(Format::Json);
        };
        accept.split(',').find_map(|item| {
            let media = item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                Self::ARROW_STREAM | "application/vnd.apache.arrow.file" => {
                    Some(Format::ArrowStream)
                }
                "application/x-ndjson" | "application/jsonl" | "application/ndjson" => {
                    Some(Format::NdJson)
                }
                "text/csv" => Some(Format::Csv),
                "application/json" | "application/*" | "*/*" => Some(Format::Json),
                _ => None,
            }
        })
    }

    /// The `Content-Type` of a response in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::ArrowStream => Self::ARROW_STREAM,
            Format::NdJson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Turns batches into the bytes of one response.
pub struct Encoder {
    state: State,
}

enum State {
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    NdJson,
    Csv { header_written: bool },
    Json { rows_written: bool },
}

impl Encoder {
    /// An encoder of `format` for batches of `schema`.
    pub fn new(format: Format, schema: &SchemaRef) -> Result<Self, ArrowError> {
        let state = match format {
            Format::ArrowStream => State::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?,
            )),
            Format::NdJson => State::NdJson,
            Format::Csv => State::Csv {
                header_written: false,
            },
            Format::Json => State::Json {
                rows_written: false,
            },
        };
        Ok(Self { state })
    }

    /// What goes before the first batch (the Arrow schema, JSON's `[`, a CSV header of a
    /// result without rows is written at the end).
    pub fn start(&mut self) -> Bytes {
        match &mut self.state {
            State::Arrow(writer) => Bytes::from(std::mem::take(writer.get_mut())),
            State::Json { .. } => Bytes::from_static(b"["),
            _ => Bytes::new(),
        }
    }

    /// The bytes of one batch's rows.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        Ok(Bytes::from(match &mut self.state {
            State::Arrow(writer) => {
                writer.write(batch)?;
                std::mem::take(writer.get_mut())
            }
            State::NdJson => ndjson(batch)?,
            State::Csv { header_written } => {
                let mut out = Vec::new();
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(&mut out);
                writer.write(batch)?;
                drop(writer);
                *header_written = true;
                out
            }
            State::Json { rows_written } => {
                let lines = ndjson(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 16);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    // JSON text never holds a raw newline inside a value, so lines are rows.
                    if *rows_written {
                        out.push(b',');
                    }
                    out.push(b'\n');
                    out.extend_from_slice(line);
                    *rows_written = true;
                }
                out
            }
        }))
    }

    /// What goes after the last batch: the Arrow end marker, JSON's `]`, or the CSV header
    /// of a result without rows.
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<Bytes, ArrowError> {
        Ok(Bytes::from(match &mut self.state {
            State::Arrow(writer) => {
                writer.finish()?;
                std::mem::take(writer.get_mut())
            }
            State::NdJson => Vec::new(),
            State::Csv { header_written } => {
                if *header_written {
                    Vec::new()
                } else {
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    let mut out = Vec::new();
                    let mut writer = arrow::csv::WriterBuilder::new()
                        .with_header(false)
                        .build(&mut out);
                    let header = RecordBatch::try_new(
                        std::sync::Arc::new(arrow::datatypes::Schema::new(
                            names
                                .iter()
                                .map(|n| {
                                    arrow::datatypes::Field::new(
                                        *n,
                                        arrow::datatypes::DataType::Utf8,
                                        false,
                                    )
                                })
                                .collect::<Vec<_>>(),
                        )),
                        names
                            .iter()
                            .map(|n| {
                                std::sync::Arc::new(arrow::array::StringArray::from(vec![*n]))
                                    as arrow::array::ArrayRef
                            })
                            .collect(),
                    )?;
                    writer.write(&header)?;
                    drop(writer);
                    out
                }
            }
            State::Json { rows_written } => {
                if *rows_written {
                    b"\n]\n".to_vec()
                } else {
                    b"]\n".to_vec()
                }
            }
        }))
    }
}

fn ndjson(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a\nb"), None])),
            ],
        )
        .unwrap()
    }

    fn encode(format: Format, batches: &[RecordBatch]) -> Vec<u8> {
        let schema = batch().schema();
        let mut encoder = Encoder::new(format, &schema).unwrap();
        let mut out = encoder.start().to_vec();
        for b in batches {
            out.extend_from_slice(&encoder.batch(b).unwrap());
        }
        out.extend_from_slice(&encoder.finish(&schema).unwrap());
        out
    }

    #[test]
    fn json_is_one_array_over_all_batches_and_parses() {
        let text = encode(Format::Json, &[batch(), batch()]);
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 4);
        assert_eq!(value[0]["name"], "a\nb");
        let empty: serde_json::Value = serde_json::from_slice(&encode(Format::Json, &[])).unwrap();
        assert_eq!(empty, serde_json::json!([]));
    }

    #[test]
    fn csv_has_one_header_even_without_rows() {
        let text = String::from_utf8(encode(Format::Csv, &[batch(), batch()])).unwrap();
        assert_eq!(text.matches("id,name").count(), 1, "{text}");
        let text = String::from_utf8(encode(Format::Csv, &[])).unwrap();
        assert_eq!(text.trim(), "id,name");
    }

    #[test]
    fn arrow_stream_reads_back() {
        let bytes = encode(Format::ArrowStream, &[batch(), batch()]);
        let reader = arrow::ipc::reader::StreamReader::try_new(&bytes[..], None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 4);
    }

    #[test]
    fn accept_headers_choose_the_encoding() {
        assert_eq!(Format::negotiate(None), Some(Format::Json));
        assert_eq!(
            Format::negotiate(Some("application/vnd.apache.arrow.stream")),
            Some(Format::ArrowStream)
        );
        assert_eq!(
            Format::negotiate(Some("text/html, application/x-ndjson;q=0.9")),
            Some(Format::NdJson)
        );
        assert_eq!(Format::negotiate(Some("text/csv")), Some(Format::Csv));
        assert_eq!(Format::negotiate(Some("image/png")), None);
    }
}
