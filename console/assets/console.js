// Headroom console: swaps in live values every 2 s and reloads charts every 15 s,
// without reloading the page. No libraries, nothing fetched from elsewhere.
(function () {
  "use strict";
  function refreshLive() {
    var el = document.getElementById("live");
    if (!el) return;
    fetch(el.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401 || r.redirected) { window.location = "/login"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          el.innerHTML = html;
          el.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  function refreshCharts() {
    document.querySelectorAll("img[data-chart]").forEach(function (img) {
      var u = new URL(img.src, window.location.href);
      u.searchParams.set("t", String(Date.now()));
      img.src = u.toString();
    });
  }
  setInterval(refreshLive, 2000);
  setInterval(refreshCharts, 15000);
  var line = document.getElementById("error-line");
  if (line) { line.scrollIntoView({ block: "center" }); }
})();
