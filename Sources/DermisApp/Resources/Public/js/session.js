// The numbing timer counts up from when the anaesthetic went on, and says when the protocol's minimum is reached.
(function () {
  "use strict";
  var timer = document.getElementById("numbing-timer");
  if (!timer || !timer.dataset.applied) { return; }
  var applied = Date.parse(timer.dataset.applied);
  var minimum = parseInt(timer.dataset.minimum, 10);
  function tick() {
    var minutes = Math.floor((Date.now() - applied) / 60000);
    timer.textContent = String(minutes);
    timer.classList.toggle("numbing-done", minutes >= minimum);
  }
  tick();
  setInterval(tick, 15000);
})();
