// The ranking widget of the labeling page. The form's rank selects are
// the truth the server reads (they work without this script); this keeps
// them in step with a list that can be ordered by dragging (SortableJS)
// or with the keyboard, with ties, and sets ratings from the keyboard.
(function () {
  "use strict";
  var list = document.getElementById("ranking");
  if (!list) return;
  var form = document.getElementById("label-form");
  var cards = function () { return Array.prototype.slice.call(list.querySelectorAll(".rank-card")); };
  var select = function (card) { return document.getElementById("rank_" + card.dataset.i); };
  var tieButton = function (card) { return card.querySelector(".tie"); };
  var isTied = function (card) { return tieButton(card).getAttribute("aria-pressed") === "true"; };

  // writeRanks sets each select from the list: a card tied with the one
  // above shares its rank; otherwise its rank is its position (1, 1, 3).
  function writeRanks() {
    var rank = 0;
    var parts = [];
    cards().forEach(function (card, pos) {
      var tie = pos > 0 && isTied(card);
      if (pos === 0) tieButton(card).setAttribute("aria-pressed", "false");
      if (!tie) rank = pos + 1;
      card.classList.toggle("tied", tie);
      card.querySelector(".rank-no").textContent = rank + ".";
      select(card).value = String(rank);
      parts.push((tie ? "= " : (pos ? "> " : "")) + card.querySelector("b").textContent);
    });
    document.getElementById("rank-summary").textContent = "Your ranking: " + parts.join(" ");
  }

  // readRanks orders the list by the selects, when a labeler sets them by
  // hand: equal ranks become ties.
  function readRanks() {
    var cs = cards();
    if (cs.some(function (c) { return select(c).value === ""; })) return;
    cs.sort(function (a, b) { return (+select(a).value) - (+select(b).value) || a.dataset.i - b.dataset.i; });
    cs.forEach(function (c, pos) {
      list.appendChild(c);
      tieButton(c).setAttribute("aria-pressed", pos > 0 && select(c).value === select(cs[pos - 1]).value ? "true" : "false");
    });
    writeRanks();
  }

  function move(card, delta) {
    var cs = cards();
    var to = cs.indexOf(card) + delta;
    if (to < 0 || to >= cs.length) return;
    if (delta < 0) list.insertBefore(card, cs[to]); else list.insertBefore(card, cs[to].nextSibling);
    writeRanks();
    card.focus();
  }

  function toggleTie(card) {
    var b = tieButton(card);
    b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") === "true" ? "false" : "true");
    writeRanks();
  }

  cards().forEach(function (card) {
    tieButton(card).addEventListener("click", function (e) { e.preventDefault(); toggleTie(card); });
    card.addEventListener("keydown", function (e) {
      if (e.target !== card) return;
      var k = e.key;
      if (k === "ArrowUp" || k === "k") { move(card, -1); }
      else if (k === "ArrowDown" || k === "j") { move(card, 1); }
      else if (k === "=" || k === "t") { toggleTie(card); }
      else if (/^[1-7]$/.test(k)) { document.getElementById("rating_" + card.dataset.i + "_" + k).checked = true; }
      else return;
      e.preventDefault();
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("select[id^=rank_]"), function (s) {
    s.addEventListener("change", readRanks);
  });
  document.getElementById("keep-order").addEventListener("click", writeRanks);
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (typeof form.requestSubmit === "function") form.requestSubmit(); else form.submit();
    }
  });
  if (window.Sortable) {
    // forceFallback: pointer events, not the browser's drag-and-drop, so
    // touch screens and automated browsers drag alike.
    window.Sortable.create(list, { animation: 120, forceFallback: true, filter: ".tie", preventOnFilter: false, onEnd: writeRanks });
  }
})();
