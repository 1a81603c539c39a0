// One chat surface, found only through the DOM convention of docs/chat-pane.md: a pane's view
// frame or the web page. Everything a person does goes through real input events.

import { installProbes, lastEnter, seenAt, watchToken } from "./browser.mjs";

export class Surface {
  constructor(label, frame) {
    this.label = label;
    this.frame = frame;
  }

  log() {
    return this.frame.getByRole("log");
  }
  box() {
    return this.frame.getByRole("textbox", { name: /message/i });
  }
  button(name) {
    return this.frame.getByRole("button", { name });
  }
  status() {
    return this.frame.getByRole("status");
  }

  async statusText() {
    return ((await this.status().textContent({ timeout: 5000 })) ?? "").trim();
  }
  async logText() {
    return (await this.log().innerText({ timeout: 5000 })) ?? "";
  }

  /** Waits until the state line matches `re`; returns its text. */
  async waitStatus(re, ms = 10000) {
    const deadline = Date.now() + ms;
    let last = "";
    for (;;) {
      let text = null;
      try {
        text = await this.statusText();
        last = JSON.stringify(text);
      } catch (e) {
        last = `no state line (role="status"): ${e.message.split("\n")[0]}`;
      }
      if (text !== null && re.test(text)) return text;
      if (Date.now() > deadline) {
        throw new Error(`${this.label}: the state line never matched ${re}; it says ${last}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Waits until the transcript shows `text`. */
  async waitLog(text, ms = 10000) {
    const deadline = Date.now() + ms;
    let last = "";
    for (;;) {
      last = await this.logText().catch(() => "");
      if (last.includes(text)) return last;
      if (Date.now() > deadline) {
        throw new Error(
          `${this.label}: the transcript (role="log") never showed ${JSON.stringify(text)}; it shows ${JSON.stringify(last.slice(-600))}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async click(name) {
    await this.button(name).click({ timeout: 5000 });
  }

  /** Types `text` into the message box (Shift+Enter for each newline) and presses Enter. */
  async send(text) {
    const box = this.box();
    await box.click({ timeout: 5000 });
    await box.fill("");
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      if (i > 0) await box.press("Shift+Enter");
      if (lines[i]) await box.pressSequentially(lines[i], { delay: 0 });
    }
    await box.press("Enter");
  }

  /** Presses Tab (on the page's `keyboard`) until `locator` has the focus. */
  async tabTo(keyboard, locator, what, max = 40) {
    for (let i = 0; i < max; i++) {
      await keyboard.press("Tab");
      const focused = await locator
        .evaluate((el) => el === el.ownerDocument.activeElement && el.ownerDocument.hasFocus(), null, {
          timeout: 2000,
        })
        .catch(() => false);
      if (focused) return i + 1;
    }
    throw new Error(`${this.label}: ${max} presses of Tab never focused ${what}`);
  }

  /** Keyboard only: Tab to the button named `name`, press Enter. */
  async pressButtonByKeyboard(keyboard, name) {
    await this.tabTo(keyboard, this.button(name), `the button ${name}`);
    await keyboard.press("Enter");
  }

  /** Keyboard only: Tab to the message box, type, press Enter. */
  async sendByKeyboard(keyboard, text) {
    await this.tabTo(keyboard, this.box(), "the message box");
    await keyboard.type(text);
    await keyboard.press("Enter");
  }

  async installProbes() {
    await installProbes(this.frame);
  }

  /** Sends `text` from this surface; returns ms from Enter here to visible in `other`. */
  async sendMeasured(other, text, ms = 10000) {
    await watchToken(other.frame, text);
    await this.send(text);
    const t0 = await lastEnter(this.frame);
    const t1 = await seenAt(other.frame, text, ms);
    if (!t1) {
      await other.waitLog(text, 1); // throws with what the transcript shows
    }
    await this.waitLog(text, ms); // one's own line shows too
    return t1 - t0;
  }

  /** Computed colour luminance (0..1) of the transcript's text. */
  async textLuminance() {
    return this.log().evaluate((el) => {
      const [r, g, b] = getComputedStyle(el)
        .color.match(/[\d.]+/g)
        .slice(0, 3)
        .map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    });
  }
}
