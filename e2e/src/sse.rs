//! A minimal `text/event-stream` reader: enough of the SSE format to follow a ticket's
//! stream as a browser's EventSource would (event names, ids, data, retry, comments).

use futures::{Stream, StreamExt};

/// One dispatched event, or a comment line (the server's keep-alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Event(SseEvent),
    Comment,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the server named none.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub retry_ms: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

/// Splits a byte stream into frames; chunks may cut lines anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    current: Option<SseEvent>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.pending.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(mut event) = self.current.take() {
                    if event.event.is_empty() {
                        event.event = "message".into();
                    }
                    frames.push(Frame::Event(event));
                }
                continue;
            }
            if line.starts_with(':') {
                frames.push(Frame::Comment);
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            let event = self.current.get_or_insert_with(SseEvent::default);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "retry" => event.retry_ms = value.parse().ok(),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
        frames
    }
}

/// An open stream, read frame by frame.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: SseParser,
    ready: std::collections::VecDeque<Frame>,
}

impl EventStream {
    /// Wraps a successful `text/event-stream` response.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            ready: Default::default(),
        }
    }

    /// The next frame; `None` when the server ended the stream (or it broke).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(frame);
            }
            let chunk = self.body.next().await?.ok()?;
            self.ready.extend(self.parser.push(&chunk));
        }
    }

    /// The next event, skipping comments.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Frame::Event(event) = self.next_frame().await? {
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_comments_survive_arbitrary_chunking() {
        let text = b": keep-alive\n\nretry: 3000\nevent: position\nid: 7\ndata: {\"position\":3}\n\nevent: active\ndata: a\ndata: b\n\n";
        for cut in 1..text.len() {
            let mut parser = SseParser::default();
            let mut frames = parser.push(&text[..cut]);
            frames.extend(parser.push(&text[cut..]));
            assert_eq!(
                frames,
                vec![
                    Frame::Comment,
                    Frame::Event(SseEvent {
                        event: "position".into(),
                        id: Some("7".into()),
                        data: "{\"position\":3}".into(),
                        retry_ms: Some(3000),
                    }),
                    Frame::Event(SseEvent {
                        event: "active".into(),
                        id: None,
                        data: "a\nb".into(),
                        retry_ms: None,
                    }),
                ],
                "cut at {cut}"
            );
        }
    }
}
