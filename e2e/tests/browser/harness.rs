//! Headless Chromium driven over WebDriver: a chromedriver of the test's own on a free port,
//! a browser session, keyboard input through WebDriver actions, steps that leave a screenshot
//! and the page source in `target/browser/` when they fail, and the page checks (no inline
//! script or style, the stylesheet loaded; axe-core).

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use portcullis_e2e::realm::{executable, free_port};
use portcullis_e2e::{repo_root, skipped};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to appear after a navigation or a form submission.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// At most this many browsers at once: the suite shares a small machine.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Why this machine cannot run the browser tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !executable(Path::new(p)))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} missing: apt-get install chromium chromium-driver fonts-dejavu-core (scripts/test.sh does, as root)",
            missing.join(" and ")
        )
    })
}

/// A browser session of one test.
pub struct Browser {
    client: Client,
    _driver: Driver,
    test: &'static str,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for `test`; `None` (after a loud SKIPPED
    /// line) when this machine has no Chromium.
    pub async fn start(test: &'static str) -> Option<Self> {
        if let Some(reason) = skip_reason() {
            skipped(&format!("browser test {test}"), &reason);
            return None;
        }
        // One TLS stack, rustls with ring; reqwest is built without a default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let permit = BROWSERS.acquire().await.unwrap();
        let port = free_port();
        // A process group of its own: chromedriver's Chromium processes end with it (Drop).
        let driver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ready(&url).await;
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // --no-sandbox: the tests run as root in CI containers.
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1000", "--lang=en-US"]
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap();
        Some(Self {
            client,
            _driver: driver,
            test,
            _permit: permit,
        })
    }

    /// Runs `step`; when it panics, saves `target/browser/<test>-<name>.png` and `.html` of
    /// the page the browser shows, then fails the test.
    pub async fn step<T>(&self, name: &str, step: impl Future<Output = T>) -> T {
        match AssertUnwindSafe(step).catch_unwind().await {
            Ok(value) => value,
            Err(panic) => {
                self.save(name).await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Saves `target/browser/<test>-<name>.png` and `.html` of the page the browser shows.
    pub async fn save(&self, name: &str) {
        let dir = shots_dir();
        let stem = dir.join(format!("{}-{name}", self.test));
        let saved = async {
            std::fs::create_dir_all(&dir).ok()?;
            let png = self.client.screenshot().await.ok()?;
            std::fs::write(stem.with_extension("png"), png).ok()?;
            let html = self.client.source().await.ok()?;
            std::fs::write(stem.with_extension("html"), html).ok()
        };
        match saved.await {
            Some(()) => eprintln!("browser: saved {}.png and .html", stem.display()),
            None => eprintln!("browser: could not save {}.png", stem.display()),
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The URL the browser shows.
    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.unwrap()
    }

    /// Waits for the page whose `h1` contains `text` (after a navigation or a submission).
    pub async fn page(&self, text: &str) {
        let xpath = format!("//h1[contains(normalize-space(.), '{text}')]");
        if let Err(error) = self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::XPath(&xpath))
            .await
        {
            let shown = self.text("h1").await;
            panic!(
                "no page with the heading {text:?} ({error}); the browser shows {:?} at {}",
                shown,
                self.url().await
            );
        }
    }

    /// The text of the first element matching `css` once it appears (after a submission whose
    /// answer keeps the same heading, so `page` cannot tell the old page from the new one),
    /// or `None` after `PAGE_WAIT`.
    pub async fn text_when_shown(&self, css: &str) -> Option<String> {
        let deadline = Instant::now() + PAGE_WAIT;
        while Instant::now() < deadline {
            // Found on a page the browser is just leaving, the element goes stale: look again.
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                return Some(text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Waits for a page whose `h1` contains one of `texts` (when a step may lead to either);
    /// returns that heading.
    pub async fn page_among(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let heading = self.text("h1").await.unwrap_or_default();
            if texts.iter().any(|t| heading.contains(t)) {
                return heading;
            }
            assert!(
                Instant::now() < deadline,
                "none of the pages {texts:?}; the browser shows {heading:?} at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`, if any (`None` too when it went stale
    /// while being read: the page changed).
    pub async fn text(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        }
    }

    /// The texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(element.text().await.unwrap());
        }
        texts
    }

    /// Types `text` into the field matching `css` (WebDriver's element input).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Presses the button whose text is exactly `text` (the first, when there are several).
    pub async fn press_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space(.)='{text}']");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Follows the link whose text is exactly `text`.
    pub async fn follow(&self, text: &str) {
        self.client
            .find(Locator::LinkText(text))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Whether the checkbox or radio button matching `css` is checked.
    pub async fn checked(&self, css: &str) -> bool {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .is_selected()
            .await
            .unwrap()
    }

    /// Presses and releases `key`.
    pub async fn press(&self, key: Key) {
        self.keys(&[char::from(key)]).await;
    }

    /// Types `text` into whatever has the focus, key by key.
    pub async fn type_text(&self, text: &str) {
        self.keys(&text.chars().collect::<Vec<_>>()).await;
    }

    async fn keys(&self, keys: &[char]) {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for &value in keys {
            actions = actions
                .then(KeyAction::Down { value })
                .then(KeyAction::Up { value });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Whether the focused element matches `css`.
    pub async fn focused(&self, css: &str) -> bool {
        let matches = self
            .client
            .execute(
                "return document.activeElement !== null && document.activeElement.matches(arguments[0]);",
                vec![json!(css)],
            )
            .await
            .unwrap();
        matches == json!(true)
    }

    /// Fails unless the focused element shows a focus indicator a keyboard user can see
    /// (WCAG 2.4.7; axe-core does not check it): an outline at least 2px wide.
    pub async fn assert_focus_visible(&self) {
        let outline = self
            .client
            .execute(
                "const e = document.activeElement, s = getComputedStyle(e);
                 return {element: e.outerHTML.slice(0, 80), style: s.outlineStyle, width: parseFloat(s.outlineWidth)};",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            outline["style"] != "none" && outline["width"].as_f64().unwrap_or_default() >= 2.0,
            "no visible focus indicator: {outline}"
        );
    }

    /// Presses Tab until the element matching `css` has the focus, as a keyboard user would;
    /// fails if ten presses do not reach it.
    pub async fn tab_to(&self, css: &str) {
        for _ in 0..10 {
            if self.focused(css).await {
                return;
            }
            self.press(Key::Tab).await;
        }
        assert!(self.focused(css).await, "Tab never reaches {css}");
    }

    /// What keeps the page from a CSP without `unsafe-inline` or from its look: inline
    /// script, `style` elements or attributes, event-handler attributes, and any stylesheet
    /// but the realm's one hashed file with its rules loaded. Empty when the page is clean.
    pub async fn csp_problems(&self, issuer: &str) -> Vec<String> {
        let found = self
            .client
            .execute(
                "const sheets = [...document.styleSheets];
                 return {
                   inline: [...document.querySelectorAll('[style], style, script:not([src])')].map(e => e.outerHTML.slice(0, 80)),
                   handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).map(e => e.outerHTML.slice(0, 80)),
                   sheets: sheets.map(s => ({href: s.href, rules: s.cssRules.length})),
                 };",
                vec![],
            )
            .await
            .unwrap();
        let strings = |key: &str| -> Vec<String> {
            found[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let mut problems: Vec<String> = strings("inline")
            .into_iter()
            .map(|e| format!("inline script or style: {e}"))
            .chain(
                strings("handlers")
                    .into_iter()
                    .map(|e| format!("event-handler attribute: {e}")),
            )
            .collect();
        let sheets = found["sheets"].as_array().unwrap();
        let realm_sheet = |sheet: &Value| {
            let href = sheet["href"].as_str().unwrap_or_default();
            href.starts_with(&format!("{issuer}/static/portcullis-"))
                && href.ends_with(".css")
                && sheet["rules"].as_u64().unwrap_or_default() > 0
        };
        if sheets.len() != 1 || !realm_sheet(&sheets[0]) {
            problems.push(format!(
                "not exactly the realm's stylesheet, loaded: {sheets:?}"
            ));
        }
        problems
    }

    /// The axe-core WCAG 2 A and AA violations of the page; `axe` is axe-core's source.
    pub async fn axe_violations(&self, axe: &str) -> Vec<Value> {
        // WebDriver scripts are not subject to the page's CSP, and axe needs no eval.
        self.client.execute(axe, vec![]).await.unwrap();
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})
                    .then(r => done({violations: r.violations, passes: r.passes.length}),
                          e => done({error: String(e)}));",
                vec![],
            )
            .await
            .unwrap();
        assert!(result.get("error").is_none(), "axe failed: {result}");
        assert!(
            result["passes"].as_u64().unwrap() > 0,
            "axe checked nothing: {result}"
        );
        result["violations"].as_array().unwrap().clone()
    }

    /// Takes a screenshot of what the browser shows, keeps it as
    /// `target/browser/<test>-<name>.png`, and reads every QR code in it: the PNG is decoded
    /// by Chromium itself (no image crate here), thresholded, and searched by `rqrr`. A QR code
    /// counts only if it is on screen, drawn large and sharp enough for a phone's camera.
    pub async fn qr_codes_in_screenshot(&self, name: &str) -> Vec<String> {
        use base64::Engine as _;
        let png = self.client.screenshot().await.unwrap();
        let dir = shots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, &png).unwrap();
        eprintln!("browser: saved {}", path.display());
        let decoded = self
            .client
            .execute_async(
                "const [png, done] = arguments;
                 const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
                 createImageBitmap(new Blob([bytes], {type: 'image/png'})).then(bitmap => {
                     const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
                     const context = canvas.getContext('2d');
                     context.drawImage(bitmap, 0, 0);
                     const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
                     const dark = new Array(bitmap.width * bitmap.height);
                     for (let i = 0; i < dark.length; i++) {
                         const luma = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1]
                             + 0.114 * rgba[4 * i + 2];
                         dark[i] = luma < 128 ? '1' : '0';
                     }
                     done({width: bitmap.width, height: bitmap.height, dark: dark.join('')});
                 }, e => done({error: String(e)}));",
                vec![json!(
                    base64::engine::general_purpose::STANDARD.encode(&png)
                )],
            )
            .await
            .unwrap();
        assert!(decoded.get("error").is_none(), "the screenshot: {decoded}");
        let width = decoded["width"].as_u64().unwrap() as usize;
        let height = decoded["height"].as_u64().unwrap() as usize;
        let dark = decoded["dark"].as_str().unwrap().as_bytes();
        assert_eq!(dark.len(), width * height);
        let mut image = rqrr::PreparedImage::prepare_from_bitmap(width, height, |x, y| {
            dark[y * width + x] == b'1'
        });
        image
            .detect_grids()
            .into_iter()
            .filter_map(|grid| grid.decode().ok().map(|(_, content)| content))
            .collect()
    }

    /// Scrolls the element matching `css` into the middle of the window.
    pub async fn scroll_to(&self, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
                vec![json!(css)],
            )
            .await
            .unwrap();
    }

    /// Forgets every cookie of the current site: the browser of someone who signed out.
    pub async fn forget_cookies(&self) {
        self.client.delete_all_cookies().await.unwrap();
    }

    /// Ends the browser session (Chromium exits) and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The chromedriver process, ended with the Chromium it started (they share its process
/// group) when the test ends, passed or failed.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// Polls chromedriver's `/status` until it says it is ready, for ten seconds at most.
async fn wait_until_ready(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = http.get(format!("{url}/status")).send().await
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == json!(true)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver at {url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `target/browser`, beside the profile directories of the running test binary.
fn shots_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("browser")))
        .unwrap_or_else(|| repo_root().join("target/browser"))
}

/// axe-core's source, or `None` (after a loud SKIPPED line naming `test`) when it is not
/// installed (`npm ci` in e2e/node; scripts/test.sh runs it).
pub fn axe_source(test: &str) -> Option<String> {
    match std::fs::read_to_string(axe_path()) {
        Ok(source) => Some(source),
        Err(error) => {
            skipped(
                &format!("axe-core check in {test}"),
                &format!(
                    "{} ({error}); run `npm ci` in e2e/node (scripts/test.sh does)",
                    axe_path().display()
                ),
            );
            None
        }
    }
}

fn axe_path() -> PathBuf {
    repo_root().join("e2e/node/node_modules/axe-core/axe.min.js")
}
