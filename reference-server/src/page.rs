//! The browser test page (`GET /`): plain HTML and JavaScript, talking only to this server.

use axum::response::Html;

const INDEX: &str = include_str!("../static/index.html");

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_uses_only_its_own_server() {
        // No third-party scripts, styles or fonts: the page must work offline.
        assert!(!super::INDEX.contains("https://"));
        assert!(!super::INDEX.contains("http://"));
        assert!(super::INDEX.contains("/api/v1/chat/ws/"));
    }
}
