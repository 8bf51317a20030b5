// Auto-refresh, the page's only script: every data-refresh seconds, while the tab is visible,
// fetch a fresh copy and swap in its <main>. Without JavaScript the page is complete as served.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh"), 10);
  if (!seconds || !window.fetch || !window.DOMParser) { return; }
  function refresh() {
    if (document.visibilityState !== "visible") { return; }
    // Keep an open <details> open across the swap.
    var open = Array.prototype.map.call(document.querySelectorAll("main details[open] summary"),
                                        function (s) { return s.textContent; });
    fetch(window.location.href, {headers: {"Accept": "text/html"}, cache: "no-store"})
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (!fresh || !main || main.contains(document.activeElement) && document.activeElement.tagName === "INPUT") { return; }
        main.innerHTML = fresh.innerHTML;
        Array.prototype.forEach.call(document.querySelectorAll("main details summary"), function (s) {
          if (open.indexOf(s.textContent) >= 0) { s.parentNode.open = true; }
        });
        document.body.setAttribute("data-refreshed", new Date().toISOString());
      })
      .catch(function () { /* offline or down: keep what is shown, try again next time */ });
  }
  window.setInterval(refresh, seconds * 1000);
}());
