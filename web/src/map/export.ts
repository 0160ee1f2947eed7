// Exports of a map: JSON (the server's export, docs/map-schema.json, importable), and SVG and
// PNG pictures of the map as it is on screen (the grid with its styles inlined, so the file
// looks like the screen without the app's stylesheet).

import { api } from "../api";

function save(blob: Blob, filename: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

export async function downloadJson(name: string) {
  const doc = await api.exportMap(name);
  save(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }), `${name}.map.json`);
}

/** The properties copied from the screen into the picture. */
const STYLE_PROPS = [
  "display", "box-sizing", "width", "height", "padding", "margin", "border", "border-radius",
  "background-color", "color", "font-family", "font-size", "font-weight", "font-style", "line-height",
  "text-align", "vertical-align", "white-space", "border-collapse", "border-spacing", "gap",
  "flex-direction", "flex-wrap", "align-items", "justify-content", "grid-template-columns", "overflow",
];

function inlineStyles(source: Element, copy: Element) {
  const cs = getComputedStyle(source);
  const style = STYLE_PROPS.map((p) => `${p}:${cs.getPropertyValue(p)}`).join(";");
  copy.setAttribute("style", style);
  // form controls show their current value, not their markup
  if (source instanceof HTMLTextAreaElement || source instanceof HTMLInputElement) {
    const div = document.createElement("div");
    div.textContent = source.value;
    div.setAttribute("style", style);
    copy.replaceWith(div);
    return;
  }
  for (let i = 0; i < source.children.length; i++) inlineStyles(source.children[i], copy.children[i]);
}

/** The map grid as an SVG document (an XHTML foreignObject in an SVG of the grid's size). */
export function mapSvg(): { svg: string; width: number; height: number } {
  const root = document.getElementById("map-export-root")!;
  const grid = root.querySelector("table")!;
  const width = Math.ceil(grid.scrollWidth);
  const height = Math.ceil(grid.scrollHeight);
  const copy = grid.cloneNode(true) as Element;
  inlineStyles(grid, copy);
  copy.querySelectorAll("button").forEach((b) => b.remove());
  const body = new XMLSerializer().serializeToString(copy);
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<rect width="100%" height="100%" fill="#ffffff"/>` +
    `<foreignObject x="0" y="0" width="${width}" height="${height}">` +
    `<div xmlns="http://www.w3.org/1999/xhtml">${body}</div>` +
    `</foreignObject></svg>`;
  return { svg, width, height };
}

export function downloadSvg(name: string) {
  save(new Blob([mapSvg().svg], { type: "image/svg+xml" }), `${name}.map.svg`);
}

/** The SVG drawn onto a canvas at twice the size, for crisp pictures. */
async function mapCanvas(): Promise<HTMLCanvasElement> {
  const { svg, width, height } = mapSvg();
  const img = new Image();
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = width * 2;
  canvas.height = height * 2;
  const ctx = canvas.getContext("2d")!;
  ctx.scale(2, 2);
  ctx.drawImage(img, 0, 0);
  return canvas;
}

export async function mapPng(): Promise<Blob> {
  const canvas = await mapCanvas();
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the picture could not be made"))), "image/png"),
  );
}

export async function downloadPng(name: string) {
  save(await mapPng(), `${name}.map.png`);
}

/** A PDF for people: A4 landscape pages with the map's title, the picture across the page's
 *  width and cut into as many pages as its height needs (jsPDF, loaded on demand). */
export async function downloadPdf(name: string, title: string, asOf: string) {
  const [{ jsPDF }, canvas] = await Promise.all([import("jspdf"), mapCanvas()]);
  const pdf = new jsPDF({ orientation: "landscape", unit: "mm", format: "a4", compress: true });
  const [pageW, pageH, margin, head] = [297, 210, 10, 12];
  const w = pageW - 2 * margin;
  const h = (canvas.height / canvas.width) * w;
  const room = pageH - 2 * margin - head;
  const pages = Math.max(1, Math.ceil(h / room));
  const png = canvas.toDataURL("image/png");
  for (let i = 0; i < pages; i++) {
    if (i > 0) pdf.addPage();
    pdf.setFontSize(12);
    pdf.text(`${title} — ${asOf} (${i + 1}/${pages})`, margin, margin + 5);
    // each page shows its slice of the picture; the rest falls outside the clip
    pdf.saveGraphicsState();
    pdf.rect(margin, margin + head, w, room, null);
    pdf.clip();
    pdf.discardPath();
    pdf.addImage(png, "PNG", margin, margin + head - i * room, w, h, "map", "FAST");
    pdf.restoreGraphicsState();
  }
  pdf.setProperties({ title, creator: "Itinera" });
  save(pdf.output("blob"), `${name}.map.pdf`);
}
