/* Draws the rule pages' charts with the vendored Chart.js. Each chart's numbers come from
   a JSON block in the page (<script type="application/json" data-chart="CANVAS-ID">),
   never from script built out of data; the same numbers are in a table beside it. */
(function () {
  "use strict";
  var COLOURS = {
    firings: "#1f5fbf",
    green: "#2e7d4f",
    yellow: "#b58a00",
    red: "#b3261e",
    unknown: "#8a94a3"
  };
  var LABELS = { firings: "Firings", green: "Green", yellow: "Yellow", red: "Red", unknown: "No score" };

  function draw(block) {
    var canvas = document.getElementById(block.getAttribute("data-chart"));
    if (!canvas || typeof Chart === "undefined") { return; }
    var data = JSON.parse(block.textContent);
    var stacked = data.kind === "bands";
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (pair) { // [name, counts], in the page's order
          return {
            label: LABELS[pair[0]] || pair[0],
            data: pair[1],
            backgroundColor: COLOURS[pair[0]] || "#5f6b7a"
          };
        })
      },
      options: {
        animation: false, // drawn at once: nothing moves for people who asked for less motion
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: stacked } },
        scales: {
          x: { stacked: stacked },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: 0 } }
        }
      }
    });
  }

  function drawAll() {
    var blocks = document.querySelectorAll("script[type='application/json'][data-chart]");
    for (var i = 0; i < blocks.length; i++) { draw(blocks[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
