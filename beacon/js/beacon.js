// geodns beacon snippet: measures this browser's latency to every PoP and reports it.
//
// Include with <script src="https://collector.example.com/beacon.js" async></script>. The
// collector prepends `window.GEODNS_BEACON = {pops, probeZone, scheme, report}`; a page may set
// that object itself first to override it (`report` may then be an absolute URL).
//
// For each PoP it fetches https://<probe-id>.<pop>.<probeZone>/ once. The probe id is random
// and unique per page view, so the DNS lookup cannot come from a cache: the authoritative
// server sees which resolver asked for it, and the collector sees how long the fetch took.
// Timings come from the Resource Timing API (request start to response end, so the DNS lookup
// and connection setup are excluded when the browser reports them separately).
(function () {
  "use strict";
  var cfg = window.GEODNS_BEACON;
  if (!cfg || !cfg.pops || !cfg.pops.length || window.__geodnsBeaconRan) return;
  window.__geodnsBeaconRan = true;

  function probeId() {
    var bytes = new Uint8Array(10);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += ("0" + bytes[i].toString(16)).slice(-2);
    return s; // 20 chars of [0-9a-f]: a valid probe id
  }

  function timing(url) {
    var entries = performance.getEntriesByName(url);
    var e = entries[entries.length - 1];
    if (!e) return null;
    var start = e.requestStart || e.startTime;
    var ms = e.responseEnd - start;
    return ms > 0 ? Math.round(ms * 1000) / 1000 : null;
  }

  function waitTiming(url, tries) {
    return new Promise(function (resolve) {
      (function poll(left) {
        var ms = timing(url);
        if (ms !== null || left <= 0) resolve(ms);
        else setTimeout(function () { poll(left - 1); }, 20);
      })(tries);
    });
  }

  function measure(id, pop) {
    var url = cfg.scheme + "://" + id + "." + pop + "." + cfg.probeZone + "/";
    var controller = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, cfg.timeoutMs || 10000);
    return fetch(url, { mode: "no-cors", cache: "no-store", credentials: "omit", signal: controller && controller.signal })
      .then(function (response) {
        clearTimeout(timer);
        // The timing entry is added once the body has arrived, which can be after fetch()
        // resolves: drain the body, then wait for the entry (briefly).
        var drained = response.arrayBuffer ? response.arrayBuffer().catch(function () {}) : Promise.resolve();
        return drained.then(function () { return waitTiming(url, 50); });
      })
      .then(function (ms) {
        return ms === null ? { pop: pop, ok: false } : { pop: pop, rtt_ms: ms, ok: true };
      }, function () {
        clearTimeout(timer);
        return { pop: pop, ok: false };
      });
  }

  function send(body) {
    // sendBeacon posts text/plain (a "simple" request: no CORS preflight) and survives the
    // page being closed; fetch with keepalive is the fallback.
    if (navigator.sendBeacon && navigator.sendBeacon(cfg.report, body)) return "beacon";
    fetch(cfg.report, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } });
    return "fetch";
  }

  function run() {
    var id = probeId();
    Promise.all(cfg.pops.map(function (pop) { return measure(id, pop); })).then(function (results) {
      var report = { probe_id: id, results: results };
      report.sent = send(JSON.stringify({ probe_id: id, results: results }));
      window.GEODNS_BEACON_LAST = report;
      window.dispatchEvent(new CustomEvent("geodns-beacon", { detail: report }));
    });
  }

  if (document.readyState === "complete") setTimeout(run, 0);
  else window.addEventListener("load", function () { setTimeout(run, 0); });
})();
