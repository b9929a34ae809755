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
