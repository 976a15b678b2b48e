//! Server-sent events, as the WHATWG spec frames them: lines end with LF, CR or CRLF; a line
//! `data:<value>` (one optional space after the colon) adds to the event's data, several
//! data lines joining with LF; a line starting with `:` is a comment; an empty line ends the
//! event. The data of each event goes straight into a JSON [`Scanner`], so nothing is
//! buffered but the first bytes of a line (to read its field name).

use super::scan::{Scanner, Visitor};

/// Longest field name read (`data` is 4; anything longer is another field).
const FIELD_MAX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Reading a field name at the start of a line.
    #[default]
    Field,
    /// Right after `data:`: an optional space.
    DataStart,
    /// In a data value.
    Data,
    /// In a line the tracker ignores (comment, `event:`, `id:`, `retry:`).
    Ignore,
}

/// The line state of an event stream. See the module documentation.
#[derive(Debug, Default)]
pub struct SseLines {
    mode: Mode,
    field: [u8; FIELD_MAX],
    field_len: usize,
    /// The previous byte was a CR (a following LF belongs to the same line end).
    after_cr: bool,
    /// Data lines in the current event.
    data_lines: u32,
    /// Events with data completed so far.
    events: u64,
}

impl SseLines {
    /// Events with data seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Whether nothing of an event was read yet (a line start between events).
    pub fn at_event_start(&self) -> bool {
        self.mode == Mode::Field && self.field_len == 0 && self.data_lines == 0
    }

    /// A whole event was read elsewhere (one data line and a blank line ending with a CR when
    /// `cr_end`): the state after it.
    pub fn skip_event(&mut self, cr_end: bool) {
        self.after_cr = cr_end;
        self.events += 1;
    }

    pub fn feed<V: Visitor>(&mut self, data: &[u8], scanner: &mut Scanner, v: &mut V) {
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            if self.after_cr {
                self.after_cr = false;
                if c == b'\n' {
                    i += 1;
                    continue;
                }
            }
            if c == b'\n' || c == b'\r' {
                self.after_cr = c == b'\r';
                self.end_line(scanner, v);
                i += 1;
                continue;
            }
            match self.mode {
                Mode::Field => {
                    if c == b':' {
                        self.mode = if self.field_len == 0 {
                            Mode::Ignore // a comment
                        } else if self.is_data() {
                            self.begin_data(scanner, v);
                            Mode::DataStart
                        } else {
                            Mode::Ignore
                        };
                    } else if self.field_len < FIELD_MAX {
                        self.field[self.field_len] = c;
                        self.field_len += 1;
                    } else {
                        self.mode = Mode::Ignore;
                    }
                    i += 1;
                }
                Mode::DataStart => {
                    self.mode = Mode::Data;
                    if c == b' ' {
                        i += 1;
                    }
                }
                Mode::Data | Mode::Ignore => {
                    let end =
                        memchr::memchr2(b'\n', b'\r', &data[i..]).map_or(data.len(), |p| i + p);
                    if self.mode == Mode::Data {
                        scanner.feed(&data[i..end], v);
                    }
                    i = end;
                }
            }
        }
    }

    /// The stream ended: an event still open is complete (servers should end it with a blank
    /// line, not all do).
    pub fn finish<V: Visitor>(&mut self, scanner: &mut Scanner, v: &mut V) {
        if self.mode != Mode::Field || self.field_len > 0 {
            self.end_line(scanner, v);
        }
        self.end_event(scanner, v);
    }

    fn is_data(&self) -> bool {
        &self.field[..self.field_len] == b"data"
    }

    fn begin_data<V: Visitor>(&mut self, scanner: &mut Scanner, v: &mut V) {
        if self.data_lines > 0 {
            scanner.feed(b"\n", v);
        }
        self.data_lines += 1;
    }

    fn end_line<V: Visitor>(&mut self, scanner: &mut Scanner, v: &mut V) {
        match self.mode {
            Mode::Field if self.field_len == 0 => self.end_event(scanner, v),
            // a line that is only a field name: `data` means an empty data line
            Mode::Field if self.is_data() => self.begin_data(scanner, v),
            _ => {}
        }
        self.mode = Mode::Field;
        self.field_len = 0;
    }

    fn end_event<V: Visitor>(&mut self, scanner: &mut Scanner, v: &mut V) {
        if self.data_lines > 0 {
            scanner.finish(v);
            v.event_end(self.data_lines, scanner.is_done());
            scanner.reset();
            self.events += 1;
        }
        self.data_lines = 0;
    }
}
