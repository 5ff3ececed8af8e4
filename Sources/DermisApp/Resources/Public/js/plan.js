// The face map mirrors the zone checkboxes: clicking (or Enter/Space on) a zone toggles its checkbox.
(function () {
  "use strict";
  var shapes = document.querySelectorAll(".face-map .zone");
  function box(zone) { return document.getElementById("zone_" + zone); }
  function sync() {
    shapes.forEach(function (shape) {
      var checkbox = box(shape.dataset.zone);
      var on = !!(checkbox && checkbox.checked);
      shape.classList.toggle("selected", on);
      shape.setAttribute("aria-checked", on ? "true" : "false");
    });
  }
  shapes.forEach(function (shape) {
    shape.setAttribute("tabindex", "0");
    shape.setAttribute("role", "checkbox");
    shape.setAttribute("aria-label", shape.querySelector("title").textContent);
    function toggle() {
      var checkbox = box(shape.dataset.zone);
      if (!checkbox) { return; }
      checkbox.checked = !checkbox.checked;
      sync();
    }
    shape.addEventListener("click", toggle);
    shape.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); toggle(); }
    });
  });
  document.querySelectorAll(".zone-list input[type=checkbox]").forEach(function (checkbox) {
    checkbox.addEventListener("change", sync);
  });
  sync();
})();
