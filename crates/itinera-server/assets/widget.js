/*! Itinera survey widget — one script tag, no framework.
 *  <script src="https://HOST/widget.js" data-write-key="wk_…" data-survey="nps-relationship"
 *          data-user-id="…" async></script>
 *  Optional: data-anonymous-id, data-lang (default: the page's language), data-delay-ms.
 *  Shows the survey once per throttle period per browser (the definition's trigger.throttle),
 *  to the definition's sample rate, and sends the answer as a Segment `track` event
 *  `Survey Responded` to HOST/v1/t. Keyboard usable: Tab/arrows to choose, Enter to send, Esc to close.
 *  Its decision is on the script tag as data-itinera-state (shown, throttled, sampled-out,
 *  unavailable) and dispatched as an `itinera:survey` event on document ({detail: {survey, state}}).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var d = script.dataset, base = new URL(script.src).origin;
  var key = d.writeKey, survey = d.survey;
  if (!key || !survey) return;
  var store = "itinera-survey-" + survey;
  var lang = (d.lang || document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  var T = {
    en: { send: "Send", close: "Close", thanks: "Thank you!", low: "not at all", high: "extremely" },
    de: { send: "Absenden", close: "Schließen", thanks: "Danke!", low: "überhaupt nicht", high: "äußerst" }
  }[lang] || null;
  T = T || { send: "Send", close: "Close", thanks: "Thank you!", low: "not at all", high: "extremely" };
  function text(map) { return (map && (map[lang] || map.en)) || ""; }
  function seconds(span) { // "90d", "12h", "30m", "45s" or a number of seconds
    if (span == null) return 0;
    if (typeof span === "number") return span;
    var m = /^(\d+(?:\.\d+)?)\s*([dhms]?)/.exec(String(span)) || [0, 0, "s"];
    return parseFloat(m[1]) * ({ d: 86400, h: 3600, m: 60, s: 1, "": 1 })[m[2]];
  }
  function decided(state) {
    script.setAttribute("data-itinera-state", state);
    document.dispatchEvent(new CustomEvent("itinera:survey", { detail: { survey: survey, state: state } }));
  }
  fetch(base + "/v1/surveys/" + encodeURIComponent(survey) + "?writeKey=" + encodeURIComponent(key))
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (def) {
      if (!def) return decided("unavailable");
      var t = def.trigger || {};
      var last = +localStorage.getItem(store) || 0;
      if (last && Date.now() - last < seconds(t.throttle) * 1000) return decided("throttled");
      if (Math.random() >= (t.sample_rate == null ? 1 : t.sample_rate)) {
        localStorage.setItem(store, Date.now());
        return decided("sampled-out");
      }
      setTimeout(function () { show(def); decided("shown"); }, +d.delayMs || seconds(t.delay) * 1000);
    })
    .catch(function () { decided("unavailable"); });
  function show(def) {
    localStorage.setItem(store, Date.now());
    var scale = def.scale || ({ nps: [0, 10], csat: [1, 5], ces: [1, 7] })[def.kind];
    var box = document.createElement("div");
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "false");
    box.setAttribute("aria-labelledby", "itinera-q");
    box.style.cssText = "position:fixed;right:1rem;bottom:1rem;max-width:26rem;background:#fff;color:#1b1b1b;border:1px solid #888;border-radius:.5rem;padding:1rem;font:16px system-ui,sans-serif;box-shadow:0 4px 16px rgba(0,0,0,.2);z-index:2147483647";
    var h = "<p id='itinera-q' style='margin:0 0 .5rem;font-weight:600'></p><div role='radiogroup' aria-labelledby='itinera-q' style='display:flex;flex-wrap:wrap;gap:.25rem'>";
    for (var v = scale[0]; v <= scale[1]; v++) {
      h += "<label style='display:inline-flex;flex-direction:column;align-items:center;min-width:2rem;cursor:pointer'><input type='radio' name='itinera-score' value='" + v + "'>" + v + "</label>";
    }
    h += "</div><p style='font-size:.8rem;margin:.25rem 0'>" + scale[0] + " = " + T.low + " · " + scale[1] + " = " + T.high + "</p>";
    if (def.follow_up && text(def.follow_up)) h += "<label id='itinera-f' style='display:block;margin-top:.5rem'></label><textarea aria-labelledby='itinera-f' maxlength='2000' style='width:100%;min-height:4rem'></textarea>";
    h += "<div style='margin-top:.5rem;display:flex;gap:.5rem'><button type='button' data-send>" + T.send + "</button><button type='button' data-close>" + T.close + "</button></div>";
    box.innerHTML = h;
    box.querySelector("#itinera-q").textContent = text(def.question);
    var f = box.querySelector("#itinera-f");
    if (f) f.textContent = text(def.follow_up);
    function close() { box.remove(); }
    box.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
    box.querySelector("[data-close]").onclick = close;
    box.querySelector("[data-send]").onclick = function () {
      var picked = box.querySelector("input[name=itinera-score]:checked");
      if (!picked) { box.querySelector("input").focus(); return; }
      var props = { survey_id: def.id, survey_kind: def.kind, score: +picked.value };
      var c = box.querySelector("textarea");
      if (c && c.value.trim()) props.comment = c.value.trim().slice(0, 2000);
      var msg = { type: "track", event: "Survey Responded", properties: props, writeKey: key,
                  context: { library: { name: "itinera-widget" }, page: { url: location.href, path: location.pathname } } };
      if (d.userId) msg.userId = d.userId;
      msg.anonymousId = d.anonymousId || localStorage.getItem("itinera-anon") || (function () {
        var id = "anon-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
        localStorage.setItem("itinera-anon", id); return id;
      })();
      fetch(base + "/v1/t", { method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify(msg), keepalive: true });
      box.innerHTML = "<p role='status' style='margin:0'></p>";
      box.firstChild.textContent = T.thanks;
      setTimeout(close, 2500);
    };
    document.body.appendChild(box);
    box.querySelector("input").focus();
  }
})();
