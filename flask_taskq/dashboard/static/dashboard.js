/* flask-taskq dashboard: live regions and charts. Plain JavaScript, no build step.
 *
 * The page names its JSON endpoint in <body data-live="..."> and carries the first answer
 * in <script id="taskq-initial" type="application/json">. Every few seconds the script
 * fetches the endpoint again, swaps each region ([data-region=NAME]) for the HTML the
 * server rendered, and redraws the charts ([data-chart=SERIES]) as inline SVG.
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var HEIGHT = 170;
  var MARGIN = { top: 10, right: 10, bottom: 22, left: 46 };
  var lastCharts = null;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function title(node, text) {
    el("title", {}, node).textContent = text;
  }

  function clock(unix) {
    var d = new Date(unix * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function niceMax(value) {
    if (!(value > 0)) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (value <= steps[i] * power) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function formatValue(kind, value) {
    if (value === null || value === undefined) { return "–"; }
    if (kind === "runtime_ms") {
      if (value >= 1000) { return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + " s"; }
      return (value >= 10 || value === 0 ? Math.round(value) : value.toFixed(1)) + " ms";
    }
    if (kind === "failure_rate") { return (Math.round(value * 10) / 10) + " %"; }
    return String(Math.round(value * 10) / 10);
  }

  function axes(svg, kind, max, width, minutes) {
    var plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    [0, 0.5, 1].forEach(function (f) {
      var y = MARGIN.top + plotH * (1 - f);
      el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y, y2: y,
                   "class": "grid-line" }, svg);
      el("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end", "class": "axis" }, svg)
        .textContent = formatValue(kind, max * f);
    });
    if (minutes.length) {
      var last = minutes.length - 1;
      [[0, "start"], [Math.floor(last / 2), "middle"], [last, "end"]].forEach(function (p) {
        var x = MARGIN.left + (width - MARGIN.left - MARGIN.right) * (p[0] + 0.5) / minutes.length;
        el("text", { x: x, y: HEIGHT - 6, "text-anchor": p[1], "class": "axis" }, svg)
          .textContent = p[0] === last ? "now" : clock(minutes[p[0]]);
      });
    }
  }

  function drawBars(svg, series, width) {
    var minutes = series.minutes, n = minutes.length;
    var layers = [["processed", "bar-processed"], ["retried", "bar-retried"], ["failed", "bar-failed"]];
    var totals = minutes.map(function (_, i) {
      return layers.reduce(function (sum, l) { return sum + (series[l[0]][i] || 0); }, 0);
    });
    var max = niceMax(Math.max.apply(null, totals.concat([0])));
    axes(svg, "throughput", max, width, minutes);
    var plotW = width - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    var band = plotW / Math.max(n, 1);
    for (var i = 0; i < n; i++) {
      var base = MARGIN.top + plotH;
      var group = el("g", { "class": "bar" }, svg);
      layers.forEach(function (l) {
        var value = series[l[0]][i] || 0;
        if (!value) { return; }
        var h = plotH * value / max;
        base -= h;
        el("rect", { x: MARGIN.left + i * band + band * 0.1, y: base,
                     width: Math.max(band * 0.8, 1), height: h, "class": l[1] }, group);
      });
      title(group, clock(minutes[i]) + ": " + (series.processed[i] || 0) + " processed, " +
            (series.failed[i] || 0) + " failed, " + (series.retried[i] || 0) + " retried");
    }
    return totals.some(function (t) { return t > 0; });
  }

  function drawLine(svg, kind, series, width) {
    var minutes = series.minutes, values = series[kind], n = minutes.length;
    var present = values.filter(function (v) { return v !== null && v !== undefined; });
    // Failure rates show at least 0-5 %, run times at least 0-1 ms (workers count whole ms).
    var max = Math.max(kind === "failure_rate" ? 5 : 1,
                       niceMax(Math.max.apply(null, present.concat([0]))));
    if (kind === "failure_rate") { max = Math.min(100, max); }
    axes(svg, kind, max, width, minutes);
    var plotW = width - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    var band = plotW / Math.max(n, 1);
    var path = "", pen = false;
    for (var i = 0; i < n; i++) {
      var v = values[i];
      if (v === null || v === undefined) { pen = false; continue; }
      var x = MARGIN.left + band * (i + 0.5), y = MARGIN.top + plotH * (1 - Math.min(v, max) / max);
      path += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      pen = true;
      var dot = el("circle", { cx: x, cy: y, r: 2.5, "class": "dot dot-" + kind }, svg);
      title(dot, clock(minutes[i]) + ": " + formatValue(kind, v));
    }
    if (path) { el("path", { d: path, "class": "line line-" + kind }, svg); }
    return present.length > 0;
  }

  function drawChart(area, series) {
    var kind = area.getAttribute("data-chart");
    var width = Math.max(area.clientWidth || 0, 240);
    var svg = el("svg", { width: width, height: HEIGHT, viewBox: "0 0 " + width + " " + HEIGHT,
                          "class": "chart-svg", "data-kind": kind });
    var drawn = kind === "throughput" ? drawBars(svg, series, width)
      : drawLine(svg, kind, series, width);
    if (!drawn) {
      el("text", { x: width / 2, y: HEIGHT / 2, "text-anchor": "middle", "class": "no-data" }, svg)
        .textContent = "no tasks in the last hour";
    }
    area.replaceChildren(svg);
  }

  function drawCharts(charts) {
    if (!charts) { return; }
    lastCharts = charts;
    document.querySelectorAll("[data-chart]").forEach(function (area) { drawChart(area, charts); });
  }

  function swapRegions(regions) {
    Object.keys(regions || {}).forEach(function (name) {
      var region = document.querySelector('[data-region="' + name + '"]');
      // Leave a region alone while the user is in it (a focused button or open details).
      if (!region || region.contains(document.activeElement) ||
          region.querySelector("details[open]")) { return; }
      region.innerHTML = regions[name];
    });
  }

  function setStatus(text, ok) {
    var badge = document.getElementById("live-status");
    if (!badge) { return; }
    badge.textContent = text;
    badge.classList.toggle("offline", !ok);
  }

  function start() {
    var initial = document.getElementById("taskq-initial");
    if (initial) {
      try { drawCharts(JSON.parse(initial.textContent).charts); } catch (e) { /* keep page */ }
    }
    var url = document.body.getAttribute("data-live");
    if (!url) { return; }
    var interval = parseInt(document.body.getAttribute("data-interval"), 10) || 3000;
    var busy = false;

    function poll() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
                   cache: "no-store" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (doc) {
          swapRegions(doc.regions);
          drawCharts(doc.charts);
          setStatus("live · " + new Date(doc.time * 1000).toLocaleTimeString(), true);
        })
        .catch(function (error) { setStatus("offline (" + error.message + ")", false); })
        .finally(function () { busy = false; });
    }

    setInterval(poll, interval);
    document.addEventListener("visibilitychange", poll);
  }

  // Destructive forms ask first.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { drawCharts(lastCharts); }, 150);
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
