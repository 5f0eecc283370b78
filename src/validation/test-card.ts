/**
 * Visa's public test card number: never a real card. The one place it is written in src/ and
 * scripts/: the API reference's examples, the dev walkthrough's example file and the bench use
 * it. It is a card number like any other to the service (refused in free text, masked in
 * answers, never logged); the walkthrough writes it to a file, never to the console.
 */
export const PUBLIC_TEST_PAN = '4111111111111111';
