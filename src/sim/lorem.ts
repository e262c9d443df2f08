/** The simulator's filler words, for its text answers and the strings of its JSON answers. */

export const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore ' +
  'et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ' +
  'ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla ' +
  'pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est'
).split(' ');

export function randomWord(random: () => number): string {
  return WORDS[Math.floor(random() * WORDS.length)] ?? 'a';
}
