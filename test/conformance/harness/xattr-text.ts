const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * An extended attribute's value as text: UTF-8 where the bytes are UTF-8, and every other byte
 * as the lone surrogate U+DC00+byte. That is Python's `surrogateescape`, how the shared kit's
 * tarfile read PAX values: tables and the tests that read them keep the form they had, and
 * no two different values print alike (a file capability holds bytes >= 0x80).
 */
export function xattrText(value: Buffer): string {
  let out = '';
  let i = 0;
  while (i < value.length) {
    const b = value[i];
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len > 0 && i + len <= value.length) {
      try {
        out += strictUtf8.decode(value.subarray(i, i + len));
        i += len;
        continue;
      } catch {
        // not a UTF-8 sequence: this byte is escaped, the next one starts afresh
      }
    }
    out += String.fromCharCode(0xdc00 + b);
    i++;
  }
  return out;
}
