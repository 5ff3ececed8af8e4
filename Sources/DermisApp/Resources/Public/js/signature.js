// The consent signature pad: draw with finger, stylus or mouse; the drawing is sent as a PNG.
(function () {
  "use strict";
  var canvas = document.getElementById("signature-pad");
  if (!canvas) { return; }
  var context = canvas.getContext("2d");
  var drawn = false, drawing = false;
  context.lineWidth = 2.5;
  context.lineCap = "round";
  context.strokeStyle = "#111";
  function point(event) {
    var box = canvas.getBoundingClientRect();
    return { x: (event.clientX - box.left) * canvas.width / box.width, y: (event.clientY - box.top) * canvas.height / box.height };
  }
  canvas.addEventListener("pointerdown", function (event) {
    drawing = true;
    var p = point(event);
    context.beginPath();
    context.moveTo(p.x, p.y);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!drawing) { return; }
    var p = point(event);
    context.lineTo(p.x, p.y);
    context.stroke();
    drawn = true;
  });
  ["pointerup", "pointercancel"].forEach(function (name) { canvas.addEventListener(name, function () { drawing = false; }); });
  document.getElementById("clear-signature").addEventListener("click", function () {
    context.clearRect(0, 0, canvas.width, canvas.height);
    drawn = false;
  });
  document.getElementById("consent-form").addEventListener("submit", function () {
    document.getElementById("signature").value = drawn ? canvas.toDataURL("image/png") : "";
  });
})();
