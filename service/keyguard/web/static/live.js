// Live refresh without a reload: every [data-live] element re-fetches its fragment every data-every seconds.
// Bounded: after 5 failures in a row it stops and says so; a 401 (session ended) goes to the login form.
// The login page's one-time link (#link=CODE) is posted once and wiped from the address bar and the history.
(function () {
  "use strict";
  var MAX_FAILURES = 5;

  function poll(el) {
    var url = el.getAttribute("data-live");
    var every = Math.max(1, parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    var failures = 0;
    function tick() {
      fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}})
        .then(function (response) {
          if (response.status === 401) { window.location.assign("/ui/login"); return null; }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          failures = 0;
          el.innerHTML = html;
          el.removeAttribute("data-stalled");
          window.setTimeout(tick, every);
        })
        .catch(function () {
          failures += 1;
          if (failures >= MAX_FAILURES) {
            el.setAttribute("data-stalled", "true");
            var note = document.createElement("p");
            note.className = "error";
            note.textContent = "Live refresh stopped after " + MAX_FAILURES + " failed tries: reload the page.";
            el.insertBefore(note, el.firstChild);
            return;
          }
          window.setTimeout(tick, every * Math.pow(2, failures));
        });
    }
    window.setTimeout(tick, every);
  }

  function redeemLink() {
    var match = /^#link=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
    var form = document.getElementById("link-login");
    if (!match || !form) { return; }
    history.replaceState(null, "", window.location.pathname);
    form.querySelector("input[name=code]").value = match[1];
    form.submit();
  }

  document.addEventListener("DOMContentLoaded", function () {
    redeemLink();
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), poll);
  });
})();
