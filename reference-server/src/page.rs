//! The browser test page (`GET /`): plain HTML and JavaScript, talking only to this server.
//! `/?selftest=1` runs the page's own self-test (see `static/index.html` and `tests/browser.rs`).

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

    #[test]
    fn page_has_its_self_test_hooks() {
        // tests/browser.rs drives these in headless Chromium; keep the names in step with it.
        for hook in [
            "id=\"selftest-result\"",
            "window.selfTest = selfTest(params)",
            "params.has(\"selftest\")",
        ] {
            assert!(super::INDEX.contains(hook), "the page lost '{hook}'");
        }
    }
}
