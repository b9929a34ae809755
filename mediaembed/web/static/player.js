// The hit's play button: seek its player to the span's start and play until the span's end.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.play");
  if (!button) return;
  const hit = button.closest("li.hit");
  const player = hit && hit.querySelector("video.player, audio.player");
  if (!player) return;
  const start = parseFloat(hit.dataset.start);
  const end = parseFloat(hit.dataset.end);
  if (!Number.isNaN(start)) player.currentTime = start;
  if (!Number.isNaN(end)) {
    const stop = () => {
      if (player.currentTime >= end) { player.pause(); player.removeEventListener("timeupdate", stop); }
    };
    player.addEventListener("timeupdate", stop);
  }
  const playing = player.play();
  if (playing && playing.catch) playing.catch(() => {});  // a browser that refuses autoplay still seeks
});

// A search without a file goes as GET, so its address can be kept, shared and gone back to; with a file,
// the form's POST carries it (and without this script every search is a POST, which works the same).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id !== "search") return;
  const files = Array.from(form.querySelectorAll("input[type=file]"));
  if (files.some((input) => input.files && input.files.length)) return;
  files.forEach((input) => { input.disabled = true; });
  form.method = "get";
  form.removeAttribute("enctype");
});
