// Opens fksteer serve's page in Debian's chromium (playwright-core), submits an FK job on the
// glyphs model and reports what the page showed: node page.mjs URL. Prints JSON on stdout.
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector("select[name=model]").options.length > 0);
  await page.fill("input[name=prompt]", 'a red "A"');
  await page.selectOption("select[name=model]", "glyphs");
  await page.selectOption("select[name=method]", "fk");
  await page.fill("input[name=particles]", "6");
  await page.fill("input[name=steps]", "24");
  await page.fill("input[name=seed]", "3");
  await page.fill("input[name=reward]", "color:target=#cc2222");
  await page.click("#go");
  await page.waitForFunction(() => {
    const img = document.querySelector("#finals img.final");
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 60000 });
  const seen = await page.evaluate(() => window.fksteerLog);
  const final = await page.evaluate(() => {
    const img = document.querySelector("#finals img.final");
    return { parameters: img.dataset.parameters, width: img.naturalWidth, download: document.querySelector("#finals a").download };
  });
  console.log(JSON.stringify({ seen, final, errors }));
} finally {
  await browser.close();
}
