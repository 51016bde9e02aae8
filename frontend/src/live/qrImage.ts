// REST snapshots carry only the QR text (`qr_string`); the socket's `qr-code` event carries a
// rendered PNG. While the socket is down the page renders the text itself. The encoder is loaded
// on demand so it stays out of the main bundle.
export async function qrDataUrl(text: string): Promise<string> {
  const { toDataURL } = await import('qrcode');
  return toDataURL(text, { errorCorrectionLevel: 'L', margin: 2, width: 264 });
}
