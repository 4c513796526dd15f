// The colouring page: line art on one canvas, the user's colour hints on a transparent canvas
// over it, both sent as PNGs to POST api/colour; the answer (a PNG of the drawing's size) is
// shown next to them. Plain browser JavaScript, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const lineCanvas = $("line");
const hintCanvas = $("hint");
const lineCtx = lineCanvas.getContext("2d");
const hintCtx = hintCanvas.getContext("2d");
const DISPLAY = 400; // the stage's side in CSS pixels (style.css --display)
const SWATCHES = ["#d83a3a", "#f0a030", "#f2d43a", "#4aa04a", "#3a78d8", "#8a4ac8",
                  "#8b5a2b", "#f4c8a8", "#202020"];

let info = { max_pixels: 2048 * 2048, examples: [] };
let hasLine = false;
let tool = "brush";
let drawing = null; // the last point of the stroke being painted, or null
let resultUrl = null;
let lineName = "drawing";

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ----- the line art ----------------------------------------------------------------------

// Show a picture as the line art: at its own size (the answer has that size), scaled down only
// when it has more pixels than the server accepts; drawn over white paper, as the server reads
// transparency.
function setLine(image, name) {
  let width = image.naturalWidth;
  let height = image.naturalHeight;
  let note = "";
  if (width * height > info.max_pixels) {
    const scale = Math.sqrt(info.max_pixels / (width * height));
    note = ` (scaled down from ${width} x ${height}, the server's limit is ` +
           `${info.max_pixels.toLocaleString()} pixels)`;
    width = Math.max(1, Math.floor(width * scale));
    height = Math.max(1, Math.floor(height * scale));
  }
  for (const canvas of [lineCanvas, hintCanvas]) {
    canvas.width = width;
    canvas.height = height;
  }
  lineCtx.fillStyle = "#ffffff";
  lineCtx.fillRect(0, 0, width, height);
  lineCtx.drawImage(image, 0, 0, width, height);
  hintCtx.clearRect(0, 0, width, height);
  const shown = fitted(width, height);
  for (const element of [lineCanvas, hintCanvas, $("result")]) {
    element.style.width = `${shown.width}px`;
    element.style.height = `${shown.height}px`;
  }
  hasLine = true;
  lineName = name.replace(/\.[^.]*$/, "") || "drawing";
  $("download").download = `${lineName}-coloured.png`;
  say(`${name}: ${width} x ${height} pixels${note}. Paint some hints, then press Colour.`);
}

// The largest size with the picture's proportions that fits the stage.
function fitted(width, height) {
  const scale = DISPLAY / Math.max(width, height);
  return { width: Math.round(width * scale), height: Math.round(height * scale) };
}

function loadLine(url, name, onDone) {
  const image = new Image();
  image.onload = () => { setLine(image, name); if (onDone) onDone(); };
  image.onerror = () => {
    say(`${name}: not a picture this browser can read (try a PNG or JPEG).`, true);
    if (onDone) onDone();
  };
  image.src = url;
}

$("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  markExample(-1);
  const url = URL.createObjectURL(file);
  loadLine(url, file.name, () => URL.revokeObjectURL(url));
  event.target.value = ""; // choosing the same file again still loads it
});

function markExample(index) {
  document.querySelectorAll("#examples button").forEach((button, i) => {
    button.setAttribute("aria-pressed", String(i === index));
  });
}

function showExamples() {
  const box = $("examples");
  info.examples.forEach((example, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = example.name;
    button.setAttribute("aria-pressed", "false");
    const thumb = document.createElement("img");
    thumb.src = example.url;
    thumb.alt = example.name;
    button.appendChild(thumb);
    button.addEventListener("click", () => {
      markExample(index);
      loadLine(example.url, example.name);
    });
    box.appendChild(button);
  });
}

// ----- painting hints --------------------------------------------------------------------

// Pointer position in the canvas's own pixels (it is shown scaled).
function canvasPoint(event) {
  const box = hintCanvas.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * hintCanvas.width / box.width,
    y: (event.clientY - box.top) * hintCanvas.height / box.height,
  };
}

// The brush size is in screen pixels, so it feels the same on a small or a large drawing.
function brushWidth() {
  return Number($("size").value) * hintCanvas.width / hintCanvas.getBoundingClientRect().width;
}

function paint(from, to) {
  hintCtx.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
  hintCtx.strokeStyle = hintCtx.fillStyle = $("colour").value;
  hintCtx.lineWidth = brushWidth();
  hintCtx.lineCap = hintCtx.lineJoin = "round";
  if (from.x === to.x && from.y === to.y) { // a click: a dot
    hintCtx.beginPath();
    hintCtx.arc(to.x, to.y, hintCtx.lineWidth / 2, 0, 2 * Math.PI);
    hintCtx.fill();
    return;
  }
  hintCtx.beginPath();
  hintCtx.moveTo(from.x, from.y);
  hintCtx.lineTo(to.x, to.y);
  hintCtx.stroke();
}

hintCanvas.addEventListener("pointerdown", (event) => {
  if (!hasLine || event.button !== 0) return;
  hintCanvas.setPointerCapture(event.pointerId);
  drawing = canvasPoint(event);
  paint(drawing, drawing);
  event.preventDefault();
});
hintCanvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const point = canvasPoint(event);
  paint(drawing, point);
  drawing = point;
});
for (const type of ["pointerup", "pointercancel"]) {
  hintCanvas.addEventListener(type, () => { drawing = null; });
}

function setTool(name) {
  tool = name;
  $("brush").setAttribute("aria-pressed", String(name === "brush"));
  $("eraser").setAttribute("aria-pressed", String(name === "eraser"));
}
$("brush").addEventListener("click", () => setTool("brush"));
$("eraser").addEventListener("click", () => setTool("eraser"));
$("clear").addEventListener("click", () => {
  hintCtx.clearRect(0, 0, hintCanvas.width, hintCanvas.height);
  say("Hints cleared.");
});
$("colour").addEventListener("input", () => setTool("brush"));

for (const colour of SWATCHES) {
  const swatch = document.createElement("button");
  swatch.type = "button";
  swatch.style.background = colour;
  swatch.title = colour;
  swatch.setAttribute("aria-label", `brush colour ${colour}`);
  swatch.addEventListener("click", () => { $("colour").value = colour; setTool("brush"); });
  $("swatches").appendChild(swatch);
}

// ----- colouring -------------------------------------------------------------------------

function pngOf(canvas) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("empty canvas"))),
                  "image/png");
  });
}

async function colourIt(withHint) {
  if (!hasLine) {
    say("Upload line art or pick an example first.", true);
    return;
  }
  const buttons = [$("go"), $("nohint")];
  buttons.forEach((button) => { button.disabled = true; });
  say(withHint ? "Colouring with your hints..." : "Colouring with no hint (all white)...");
  const started = performance.now();
  try {
    const form = new FormData();
    form.append("line", await pngOf(lineCanvas), "line.png");
    if (withHint) form.append("hint", await pngOf(hintCanvas), "hint.png");
    const response = await fetch("api/colour", { method: "POST", body: form });
    if (!response.ok) {
      say(`The server refused (${response.status}): ${(await response.text()).trim()}`, true);
      return;
    }
    const blob = await response.blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    $("result").alt = `${lineName}, coloured ${withHint ? "with the hints" : "with no hint"}`;
    $("result").src = resultUrl;
    $("download").href = resultUrl;
    $("download").hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    say(`Coloured ${withHint ? "with your hints" : "with no hint"} in ${seconds} s.`);
  } catch (error) {
    say(`Could not reach the server (${error.message}). Is it still running?`, true);
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}
$("go").addEventListener("click", () => colourIt(true));
$("nohint").addEventListener("click", () => colourIt(false));

// ----- start -----------------------------------------------------------------------------

async function start() {
  try {
    const response = await fetch("api/info");
    info = await response.json();
  } catch (error) {
    say(`Could not reach the server (${error.message}).`, true);
    return;
  }
  if (info.title) {
    $("title").textContent = info.title;
    document.title = info.title;
  }
  $("about").textContent = info.about || "";
  showExamples();
  if (info.examples.length > 0) { // open on the first example, ready to paint
    markExample(0);
    loadLine(info.examples[0].url, info.examples[0].name);
  } else {
    say("Upload a line-art picture to begin.");
  }
}
start();
