//! The status page: per-stage throughput and queue depths, and the most recent jobs with
//! their input photo, gate scores, category and an interactive 3D view of the mesh.
//!
//! In two parts, so that the data is never served without a token:
//! - `/` is a shell with no data in it, served to anyone: styles, a token form and the
//!   scripts. Its script takes the token from the form or from the address's fragment
//!   (`/#token=…`, which browsers never send to the server; removed from the address bar
//!   at once), keeps it in `sessionStorage` (gone with the tab) and sends it as
//!   `Authorization: Bearer` on every fetch.
//! - `/v1/status` is the data, an HTML fragment rendered on the server from the same
//!   data as `/v1/stats`, behind a read token like every `/v1` route. Photos and meshes
//!   are fetched by the script with the token (an `<img src>` cannot send one).
//!
//! A header rather than a cookie: a cookie would be sent by the browser on any request
//! to the API, including cross-site POSTs (CSRF), and the API would need a login route
//! to set it. The mesh viewer is a small WebGL script inlined in the shell (no CDN,
//! works offline).

use axum::extract::State;
use axum::response::Html;
use mono2mesh_infra::jobs::Job;
use std::fmt::Write as _;
use std::time::Duration;

use super::{ApiError, AppState};
use crate::stats::OpsStats;
use crate::views::{job_path, output_keys};

/// Recent jobs shown on the page.
const RECENT_JOBS: u32 = 12;
/// Window of the throughput table.
const WINDOW: Duration = Duration::from_secs(3600);
/// The WebGL viewer: parses OBJ or binary glTF, flat-shades it, drag to rotate.
const VIEWER_JS: &str = include_str!("viewer.js");

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The output to show in 3D: the first mesh in a format the viewer reads.
pub fn viewable_mesh(job: &Job) -> Option<String> {
    output_keys(job).into_iter().find_map(|(name, key)| {
        let lower = key.as_str().to_ascii_lowercase();
        (lower.ends_with(".obj") || lower.ends_with(".glb")).then_some(name)
    })
}

fn scores_text(job: &Job) -> String {
    let Some(serde_json::Value::Object(scores)) = &job.gate_scores else { return "-".to_string() };
    scores
        .iter()
        .filter_map(|(name, value)| {
            let number = value.as_f64()?;
            Some(format!("{name} {number:.1}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the panel with the token and shows it; asks for a token when there is none or
/// it is refused. Reports in `data-status` of `#status` (`loaded`, `needs token`,
/// `error: …`), and each photo in its own `data-status`.
const SHELL_JS: &str = r#"(function () {
  "use strict";
  var KEY = "mono2mesh-token";
  var main = document.getElementById("status");
  var form = document.getElementById("login");
  var message = document.getElementById("login-message");
  var fragment = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (fragment) {
    sessionStorage.setItem(KEY, decodeURIComponent(fragment[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  function ask(text) {
    form.hidden = false;
    message.textContent = text;
    main.textContent = "";
    main.dataset.status = "needs token";
  }
  function load() {
    var token = sessionStorage.getItem(KEY);
    if (!token) { ask("Enter an API token (read scope is enough)."); return; }
    var headers = { "Authorization": "Bearer " + token };
    main.dataset.status = "loading";
    fetch("/v1/status", { headers: headers, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { sessionStorage.removeItem(KEY); ask("That token was not accepted."); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text().then(function (html) {
          form.hidden = true;
          main.innerHTML = html;
          Array.prototype.forEach.call(main.querySelectorAll("img[data-src]"), function (img) {
            img.dataset.status = "loading";
            fetch(img.dataset.src, { headers: headers })
              .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.blob(); })
              .then(function (blob) { img.src = URL.createObjectURL(blob); img.dataset.status = "loaded"; })
              .catch(function (e) { img.dataset.status = "error: " + e.message; });
          });
          window.mono2meshShowMeshes(main, headers);
          main.dataset.status = "loaded";
        });
      })
      .catch(function (e) { main.dataset.status = "error: " + e.message; });
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, form.elements.token.value.trim());
    form.elements.token.value = "";
    load();
  });
  document.getElementById("forget").addEventListener("click", function () { sessionStorage.removeItem(KEY); ask("Token forgotten."); });
  load();
})();"#;

/// The page at `/`: no data, only what it takes to ask for a token and load the panel.
pub fn shell() -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mono2mesh status</title>\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}td.l,th.l{{text-align:left}}\
         .jobs{{display:flex;flex-wrap:wrap;gap:12px}}.job{{border:1px solid #ccc;padding:8px;width:300px}}\
         .job img{{width:140px;height:140px;object-fit:contain;background:#fafafa}}.job img.preview{{width:284px;height:95px}}canvas{{width:140px;height:140px;background:#eef}}\
         .state-done{{color:#070}}.state-rejected,.state-failed{{color:#a00}}</style></head><body>\
         <h1>mono2mesh</h1><form id=\"login\" hidden><p id=\"login-message\"></p>\
         <input name=\"token\" type=\"password\" autocomplete=\"off\" placeholder=\"API token\" size=\"70\"> \
         <button type=\"submit\">Show status</button></form><div id=\"status\"></div>\
         <p><button id=\"forget\" type=\"button\">Forget token</button></p>\
         <script>{VIEWER_JS}</script><script>{SHELL_JS}</script></body></html>"
    )
}

/// The data part, shown inside the shell: stage table, queues, recent jobs. Links are
/// in `data-src` / `data-mesh` for the shell's script to fetch with the token.
pub fn render(stats: &OpsStats, jobs: &[Job]) -> String {
    let mut html = String::new();
    html.push_str(
        "<h2>Stages, last hour</h2><table id=\"stages\"><tr><th class=l>stage</th><th>done</th><th>per min</th>\
         <th>p50 ms</th><th>p95 ms</th></tr>",
    );
    let fmt_ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for s in &stats.report.stages {
        let _ = write!(
            html,
            "<tr><td class=l>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            s.stage.name(),
            s.completed,
            s.per_minute,
            fmt_ms(s.latency_p50_ms),
            fmt_ms(s.latency_p95_ms)
        );
    }
    let _ = write!(
        html,
        "</table><p>rejected {} · failed {} · needs review {}</p><h2>Queues</h2>",
        stats.report.rejected, stats.report.failed, stats.report.needs_review
    );
    if stats.queues.is_empty() {
        let note = stats.queues_note.as_deref().unwrap_or("no broker asked");
        let _ = write!(html, "<p id=\"queues\">{}</p>", escape(note));
    } else {
        html.push_str("<table id=\"queues\"><tr><th class=l>queue</th><th>ready</th><th>consumers</th></tr>");
        for q in &stats.queues {
            let show = |v: Option<u32>| v.map_or("missing".to_string(), |v| v.to_string());
            let _ = write!(
                html,
                "<tr><td class=l>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&q.queue),
                show(q.messages),
                show(q.consumers)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Recent jobs</h2><div class=\"jobs\">");
    for job in jobs {
        let path = job_path(job.id);
        let label = job.external_id.clone().unwrap_or_else(|| job.id.to_string());
        let category = job.category.map_or("-".to_string(), |c| c.name().to_string());
        let _ = write!(
            html,
            "<div class=\"job\" data-job=\"{id}\"><div><b>{label}</b> <span class=\"state-{state}\">{state}</span> \
             <progress max=\"100\" value=\"{progress}\">{progress}%</progress></div>\
             <img alt=\"input photo\" data-src=\"{path}/input?stream=true\">",
            id = job.id,
            label = escape(&label),
            state = job.state.name(),
            progress = job.progress(),
        );
        if let Some(name) = viewable_mesh(job) {
            let _ = write!(
                html,
                " <canvas width=\"280\" height=\"280\" data-mesh=\"{path}/outputs/{name}?stream=true\" data-format=\"{fmt}\"></canvas>",
                name = escape(&name),
                fmt = if output_keys(job).get(&name).is_some_and(|k| k.as_str().ends_with(".glb")) { "glb" } else { "obj" },
            );
        }
        if output_keys(job).contains_key("preview") {
            let _ = write!(html, " <img class=\"preview\" alt=\"mesh preview\" data-src=\"{path}/outputs/preview?stream=true\">");
        }
        let _ = write!(
            html,
            "<div>category: {category}</div><div>size: {size}</div><div>gate: {scores}</div>",
            // The size the mesh is scaled to: the submitter's, else the category's typical one.
            size = escape(&job.size.map_or_else(|| "typical for the category".to_string(), |s| s.label())),
            scores = escape(&scores_text(job))
        );
        if let Some(quality) = &job.quality {
            let confidence = quality["confidence"].as_f64().map_or("-".to_string(), |c| format!("{c:.2}"));
            let flag = if quality["needs_review"] == serde_json::Value::Bool(true) { " <b>needs review</b>" } else { "" };
            // The parts beside it, so a reviewer sees why.
            let parts: Vec<String> = ["watertight", "one_component", "plausible_volume", "silhouette_iou", "mask_coverage"]
                .iter()
                .filter_map(|part| quality[*part].as_f64().map(|v| format!("{part} {v:.2}")))
                .collect();
            let _ = write!(html, "<div>confidence: {}{flag} <small>({})</small></div>", escape(&confidence), escape(&parts.join(", ")));
        }
        if let Some(error) = &job.last_error {
            let _ = write!(html, "<div>reason: {}</div>", escape(error));
        }
        html.push_str("</div>");
    }
    if jobs.is_empty() {
        html.push_str("<p>No jobs yet.</p>");
    }
    html.push_str("</div>");
    html
}

/// `GET /`: the shell, the same for everyone.
pub async fn status_page() -> Html<String> {
    Html(shell())
}

/// `GET /v1/status`: the panel's HTML.
pub async fn status_panel(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let stats = super::handlers::ops_stats(&state, WINDOW).await?;
    let jobs = state.ingest.jobs.recent_jobs(RECENT_JOBS).await?;
    Ok(Html(render(&stats, &jobs)))
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
