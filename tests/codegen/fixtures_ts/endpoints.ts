export type Image = {
  /**
   * The height of the image. Default value: `512`
   */
  height?: number;
  /**
   * The URL of the image.
   */
  url: string;
};
export type ImageFile = Image;
export type ImageSize = {
  /**
   * The width. Default value: `512`
   */
  width?: number;
};
export type Node = {
  /**
   * Child nodes.
   */
  children?: Array<Node>;
};
export type DemoInput = {
  /**
   * The aspect ratio.
   * Second line of the description. Default value: `"16:9"`
   */
  aspect_ratio?:
    | "16:9"
    | "1:1"
    | "9:16";
  /**
   * LoRA rank. Default value: `16`
   */
  rank?: 8 | 16 | 32;
  /**
   * Offsets. Default value: `-1`
   */
  offset?: -1 | 0 | 2.5;
  /**
   * The size. Default value: `landscape_4_3`
   */
  image_size?: ImageSize | "square_hd" | "landscape_4_3";
  /**
   * The input image.
   */
  image_url: string | Blob | File;
  /**
   * Images or one image.
   */
  fill_image_url?: Array<string | Blob | File> | string | Blob | File;
  /**
   * Steps. Default value: `28`
   */
  num_inference_steps?: number;
  /**
   * A number that says it defaults to a word. Default value: `auto`
   */
  strength?: number;
  /**
   * Enabled. Default value: `true`
   */
  enabled?: boolean;
  /**
   * Prompt. Default value: "png". Default value: `"a cat"`
   */
  "prompt-text": string;
  /**
   * Optional name. Default value: `"null"`
   */
  name?: string;
  /**
   * Anything.
   */
  extra?: unknown;
  /**
   * Nothing typed.
   */
  json_input: void;
  /**
   * Timestamps.
   */
  timestamps?: Array<void>;
  /**
   * Points.
   */
  points?: Array<Array<number>>;
  /**
   * Bitrate.
   */
  bitrate?: string | number;
  /**
   * Guidance. Default value: `5`
   */
  guidance_scale?: number | number;
  /**
   * Scale. Default value: `1`
   */
  scale?: unknown | number;
  /**
   * Resolution.
   */
  resolution?: "720p";
  /**
   * Free or listed. Default value: `16:9`
   */
  ratio?: "21:9" | "16:9" | string;
  /**
   * Tree.
   */
  tree?: Node;
  /**
   * Images.
   */
  images?: Array<ImageFile | Image>;
  /**
   * Default value: `1`
   */
  bare?: number;
  undocumented?: string;
};
export type DemoOutput = {
  /**
   * The generated image.
   */
  image: Image;
  /**
   * The file.
   */
  file: File;
};
export type File = {
  /**
   * The URL.
   */
  url: string;
};
export type MiddleInput = DemoInput;
export type AliasInput =
  MiddleInput;
export type EmptyInput = Record<string, never>;
export type EndpointTypeMap = {
  "fal-ai/demo": {
    input: DemoInput;
    output: DemoOutput;
  };
  "fal-ai/demo/alias": {
    input: AliasInput;
    output: DemoOutput;
  };
  "fal-ai/demo/empty": {
    input: EmptyInput;
    output: DemoOutput;
  };
};
