//! The bytes of an HTTP check: the GET it sends and the status line it reads back (pure). Only
//! the status matters: 2xx and 3xx are healthy, and the rest of the answer is never read.

use std::net::SocketAddr;

/// Longest status line read before giving up on the answer.
pub const MAX_STATUS_LINE: usize = 512;

/// Why an answer is not an HTTP status line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The first line is not `HTTP/x.y NNN reason`.
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(String),
    /// No line end within [`MAX_STATUS_LINE`] bytes.
    #[error("HTTP status line longer than {MAX_STATUS_LINE} bytes")]
    TooLong,
}

/// `GET path HTTP/1.0` to `addr`, asking the server to close after answering.
pub fn request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: shibafu-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The status code and the status line of an answer that starts with `received`; `Ok(None)`
/// while the line is not complete yet.
pub fn status(received: &[u8]) -> Result<Option<(u16, String)>, HttpError> {
    let Some(end) = received.iter().position(|b| *b == b'\n') else {
        return if received.len() >= MAX_STATUS_LINE {
            Err(HttpError::TooLong)
        } else {
            Ok(None)
        };
    };
    let line = String::from_utf8_lossy(&received[..end])
        .trim_end_matches('\r')
        .to_string();
    let mut words = line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    let valid = version.starts_with("HTTP/1.") && code.len() == 3;
    match code.parse::<u16>() {
        Ok(code) if valid && (100..600).contains(&code) => Ok(Some((code, line))),
        _ => Err(HttpError::NotHttp(line)),
    }
}

/// Whether a status code means healthy (2xx or 3xx).
pub fn is_healthy(code: u16) -> bool {
    (200..400).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_plain_get() {
        let addr: SocketAddr = "10.0.0.2:8080".parse().expect("addr");
        let text = String::from_utf8(request(addr, "/healthz")).expect("utf8");
        assert!(text.starts_with("GET /healthz HTTP/1.0\r\nHost: 10.0.0.2:8080\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn status_lines_are_read_once_complete() {
        assert_eq!(status(b"HTTP/1.1 20"), Ok(None));
        assert_eq!(
            status(b"HTTP/1.1 200 OK\r\nServer: x\r\n"),
            Ok(Some((200, "HTTP/1.1 200 OK".into())))
        );
        assert_eq!(
            status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Ok(Some((503, "HTTP/1.0 503 Service Unavailable".into())))
        );
        assert_eq!(
            status(b"HTTP/1.1 301\n"),
            Ok(Some((301, "HTTP/1.1 301".into())))
        );
        assert!(matches!(
            status(b"SSH-2.0-OpenSSH\r\n"),
            Err(HttpError::NotHttp(_))
        ));
        assert!(matches!(
            status(b"HTTP/1.1 2000 x\r\n"),
            Err(HttpError::NotHttp(_))
        ));
        assert_eq!(status(&[b'a'; MAX_STATUS_LINE]), Err(HttpError::TooLong));
        assert!(is_healthy(204) && is_healthy(302));
        assert!(!is_healthy(199) && !is_healthy(404) && !is_healthy(500));
    }
}
