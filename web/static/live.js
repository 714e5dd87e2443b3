// Live progress on a run's page: while the run runs, its live part is
// fetched again every few seconds.
(function () {
  "use strict";
  function tick() {
    var live = document.getElementById("live");
    if (!live || live.dataset.running !== "true") return;
    fetch(location.pathname + "/live", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var box = document.createElement("div");
        box.innerHTML = html;
        var fresh = box.querySelector("#live");
        if (fresh) live.replaceWith(fresh);
        setTimeout(tick, 3000);
      })
      .catch(function () { setTimeout(tick, 10000); });
  }
  setTimeout(tick, 3000);
})();
