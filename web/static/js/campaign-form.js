/* The campaign form: show only the chosen type's own fields (all stay in the page, so the form
   works without JavaScript too). */
(function () {
  "use strict";
  var select = document.querySelector("[data-type-select]");
  if (!select) { return; }
  function update() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-type-params]"), function (box) {
      var on = box.getAttribute("data-type-params") === select.value;
      box.hidden = !on;
      Array.prototype.forEach.call(box.querySelectorAll("input, select"), function (el) { el.disabled = !on; });
    });
  }
  select.addEventListener("change", update);
  update();
})();
